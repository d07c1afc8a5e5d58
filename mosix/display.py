"""The one way any text from a user reaches a human's terminal.

Command lines, file names and checkpoint contents are bytes that another user
chose: printed raw, an escape sequence in them would drive the reader's
terminal.  :func:`shown` renders bytes (or a ``str`` that came from them,
decoded with surrogateescape as Python decodes argv) as printable text:
printable characters, UTF-8 included, stay; an invalid UTF-8 byte becomes
``\\xNN``; a control character (C0, DEL, C1 with ESC and CSI) or any other
unprintable character (bidi overrides, separators) becomes ``\\xNN``,
``\\uNNNN`` or ``\\UNNNNNNNN``.  The result holds no control character, so it
is also always one line.  Machine-readable output does not go through here.
"""

from __future__ import annotations

from collections.abc import Iterable

_ESCAPED_BYTE = range(0xDC80, 0xDD00)  # surrogateescape's stand-ins for bytes 0x80-0xff


def _escape(ch: str) -> str:
    code = ord(ch)
    if code in _ESCAPED_BYTE:
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def shown(value: bytes | str) -> str:
    """``value`` as one line of printable text (see the module's description)."""
    text = value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
    if text.isprintable():
        return text  # the common case: nothing to escape
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def shown_words(words: Iterable[bytes | str]) -> str:
    """A command line (argv) for a human: each word shown, separated by spaces."""
    return " ".join(shown(word) for word in words)
