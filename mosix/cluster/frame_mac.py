"""The MAC on every frame two agents exchange after their handshake.

The handshake (mosix.cluster.auth) proves both ends know the cluster
secret; this keeps the rest of the connection theirs.  Each direction gets its
own key, derived from the cluster secret, both node numbers and both nonces:

    key(direction) = HMAC-SHA256(secret, KEY_LABEL 0 direction 0 caller 0 accepter 0 Na 0 Nb)

with direction "caller-to-accepter" or "accepter-to-caller".  A sealed frame is

    length (4 bytes, big-endian: payload + tag) | payload (CBOR) | tag (32 bytes)
    tag = HMAC-SHA256(key(direction), sequence (8 bytes, big-endian) | length | payload)

where ``sequence`` counts the frames sent in that direction, from 0; it is not
sent, each end counts.  So a frame injected, altered, replayed, reordered,
dropped (the next one fails), taken from another connection (other nonces) or
reflected back to its sender (the other direction's key) fails its check.

Not covered: bytes after the socket is handed to a C program
(PeerStream.detach_fd) — those programs speak their own binary frames.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from mosix.protocol import HEADER, MAX_FRAME

TAG_BYTES = 32
KEY_LABEL = b"mosix-peer-frames-v1"
SEQUENCE = struct.Struct(">Q")
CALLER_TO_ACCEPTER = "caller-to-accepter"
ACCEPTER_TO_CALLER = "accepter-to-caller"


class ForgedFrame(Exception):
    """A frame whose MAC is wrong: injected, altered, replayed or out of order."""


def frame_key(
    secret: bytes, direction: str, caller: int, accepter: int, nonce_a: str, nonce_b: str
) -> bytes:
    text = "\0".join([direction, str(caller), str(accepter), nonce_a, nonce_b]).encode()
    return hmac.new(secret, KEY_LABEL + b"\0" + text, hashlib.sha256).digest()


class FrameMac:
    """One direction of a connection: its key and the number of frames so far."""

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)
        self.sequence = 0

    def _tag(self, header: bytes, payload: bytes | memoryview) -> bytes:
        h = self._keyed.copy()
        h.update(SEQUENCE.pack(self.sequence))
        h.update(header)
        h.update(payload)
        return h.digest()

    def seal(self, frame: bytes) -> bytes:
        """A plain frame (header + payload) as the next sealed frame."""
        payload = memoryview(frame)[HEADER.size :]
        header = HEADER.pack(len(payload) + TAG_BYTES)
        tag = self._tag(header, payload)
        self.sequence += 1
        return header + payload + tag

    def open(self, header: bytes, body: bytes) -> bytes:
        """The payload of the next sealed frame (``body`` is payload + tag)."""
        payload, tag = memoryview(body)[:-TAG_BYTES], body[-TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(header, payload)):
            raise ForgedFrame("a frame failed its authentication")
        self.sequence += 1
        return bytes(payload)


def sealed_length(header: bytes) -> int:
    """The body length (payload + tag) a sealed frame's header announces; ForgedFrame
    when no genuine peer could have sent it."""
    (length,) = HEADER.unpack(header)
    if not TAG_BYTES <= length <= MAX_FRAME + TAG_BYTES:
        raise ForgedFrame(f"a frame of {length} bytes cannot be genuine")
    return int(length)
