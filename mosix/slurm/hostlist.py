"""Slurm host lists (``SLURM_JOB_NODELIST``) expanded as ``scontrol show hostnames`` does.

``node[1-3,7],gpu[01-02]`` names node1, node2, node3, node7, gpu01, gpu02:
items are separated by commas outside brackets; a bracket holds numbers and
ranges, a range keeps the zero padding of its first number, and several
brackets in one item multiply (``r[1-2]n[1-2]``: r1n1, r1n2, r2n1, r2n2).
Order is kept, as scontrol keeps it.  A malformed list is a :class:`HostListError`.
(Text after a lone bracket, ``gpu[1-2]x``, which scontrol refuses and Slurm never
writes, is accepted.)
"""

from __future__ import annotations

import itertools
import re

MAX_HOSTS = 65536  # a list naming more is refused rather than built
_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")


class HostListError(ValueError):
    pass


def _items(text: str) -> list[str]:
    """The comma-separated items of ``text`` (commas inside brackets do not count)."""
    items, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c == "[":
            depth += 1
            if depth > 1:
                raise HostListError(f"{text!r}: nested brackets")
        elif c == "]":
            depth -= 1
            if depth < 0:
                raise HostListError(f"{text!r}: ']' without '['")
        elif c == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth:
        raise HostListError(f"{text!r}: '[' without ']'")
    items.append(text[start:])
    return items


def _numbers(inside: str, whole: str) -> list[str]:
    found: list[str] = []
    for part in inside.split(","):
        m = _RANGE.fullmatch(part)
        if m is None:
            raise HostListError(f"{whole!r}: bad range {part!r}")
        first, last = m.group(1), m.group(2) or m.group(1)
        if int(last) < int(first):
            raise HostListError(f"{whole!r}: range {part!r} runs backwards")
        if int(last) - int(first) >= MAX_HOSTS:
            raise HostListError(f"{whole!r}: more than {MAX_HOSTS} hosts")
        width = len(first)
        found += [str(n).zfill(width) for n in range(int(first), int(last) + 1)]
    return found


def _expand_item(item: str, whole: str) -> list[str]:
    pieces = re.split(r"\[([^\]]*)\]", item)  # text, bracket, text, bracket, ..., text
    choices = [[p] if i % 2 == 0 else _numbers(p, whole) for i, p in enumerate(pieces)]
    count = 1
    for c in choices:
        count *= len(c)
    if count > MAX_HOSTS:
        raise HostListError(f"{whole!r}: more than {MAX_HOSTS} hosts")
    return ["".join(names) for names in itertools.product(*choices)]


def expand(text: str) -> list[str]:
    """Every host name of the Slurm host list ``text``, in order."""
    hosts: list[str] = []
    for item in _items(text.strip()):
        if not item:
            raise HostListError(f"{text!r}: empty item")
        hosts += _expand_item(item, text)
        if len(hosts) > MAX_HOSTS:
            raise HostListError(f"{text!r}: more than {MAX_HOSTS} hosts")
    return hosts
