"""Mutual challenge-response between two agents, on every TCP connection.

    caller (node A)                          accepter (node B)
    PeerHello(node=A, to_node=B, nonce=Na) ->
                                           <- PeerChallenge(node=B, nonce=Nb)
    PeerProof(mac("caller", A, B, Na, Nb)) ->
                                           <- PeerWelcome(mac("accepter", A, B, Na, Nb))
    every later frame, both ways: a MAC with a key of this connection and direction

mac is HMAC-SHA256 with the cluster secret over a label, both node numbers and
both nonces (32 random bytes each, from both sides), so a proof is good for one
connection between these two nodes in this direction only.  The accepter also
checks that the caller's address is the one the map gives to the node it
claims to be, and proves itself only after the caller has: a peer without the
secret learns nothing it could replay.  MACs are compared in constant time.
The whole exchange must finish within AUTH_TIMEOUT.  After it both sides seal
the stream (mosix.cluster.frame_mac): the traffic is authenticated, not
encrypted.

An outsider learns nothing from a refusal: whatever is wrong (an address not
in the map, a node number that is not the address's, the wrong secret, a bad
frame), the accepter answers a well-formed greeting with a challenge, then
every failure with the same Refused(REFUSAL) and closes.  Why is for its log
(AuthError's text).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

import trio

from mosix.cluster.frame_mac import ACCEPTER_TO_CALLER, CALLER_TO_ACCEPTER, frame_key
from mosix.cluster.nodemap import Node, NodeMap
from mosix.cluster.stream import PeerClosed, PeerStream, PeerUnavailable
from mosix.protocol import (
    Message,
    PeerChallenge,
    PeerHello,
    PeerProof,
    PeerWelcome,
    ProtocolError,
    Refused,
)

AUTH_TIMEOUT = 5.0  # seconds for the whole exchange
VERSION = 1
NONCE_BYTES = 32
HEX_LENGTH = 64  # of a nonce and of a MAC
LABEL = b"mosix-peer-auth-v1"
FRAME_LIMIT = 4096  # bytes of one message before the peer is known
REFUSAL = "refused"  # the accepter's one answer to every failure


class AuthError(Exception):
    """Authentication failed; the text (one line) says why."""


def mac(secret: bytes, role: str, caller: int, accepter: int, nonce_a: str, nonce_b: str) -> str:
    text = "\0".join([role, str(caller), str(accepter), nonce_a, nonce_b]).encode()
    return hmac.new(secret, LABEL + b"\0" + text, hashlib.sha256).hexdigest()


def is_hex(text: str) -> bool:
    return len(text) == HEX_LENGTH and all(c in string.hexdigits for c in text)


def same_mac(given: str, expected: str) -> bool:
    """Constant-time comparison (``given`` is checked to be hex first: compare_digest
    refuses non-ASCII text)."""
    return is_hex(given) and hmac.compare_digest(given.lower(), expected)


async def expect(stream: PeerStream, kind: type[Message], stage: str) -> Message:
    """The next message, which must be ``kind``; AuthError otherwise."""
    try:
        msg = await stream.receive(FRAME_LIMIT)
    except ProtocolError as e:
        raise AuthError(f"bad {stage}: {e}") from None
    except PeerClosed:
        raise AuthError(f"closed the connection before its {stage}") from None
    except PeerUnavailable as e:
        raise AuthError(f"{e}") from None
    if isinstance(msg, Refused):
        raise AuthError("refused the connection (its log says why)")
    if not isinstance(msg, kind):
        raise AuthError(f"bad {stage}: expected {kind.OP}, got {msg.OP}")
    return msg


async def authenticate_caller_side(
    stream: PeerStream, secret: bytes, me: int, target: Node
) -> None:
    """We connected to ``target``: prove ourselves and check its proof."""
    try:
        with trio.fail_after(AUTH_TIMEOUT):
            nonce_a = secrets.token_hex(NONCE_BYTES)
            await stream.send(
                PeerHello(version=VERSION, node=me, to_node=target.number, nonce=nonce_a)
            )
            challenge = await expect(stream, PeerChallenge, "challenge")
            assert isinstance(challenge, PeerChallenge)
            if challenge.node != target.number:
                raise AuthError(f"answered as node {challenge.node}")
            if not is_hex(challenge.nonce):
                raise AuthError("bad challenge: malformed nonce")
            nonce_b = challenge.nonce.lower()
            proof = mac(secret, "caller", me, target.number, nonce_a, nonce_b)
            await stream.send(PeerProof(proof=proof))
            welcome = await expect(stream, PeerWelcome, "welcome")
            assert isinstance(welcome, PeerWelcome)
            expected = mac(secret, "accepter", me, target.number, nonce_a, nonce_b)
            if not same_mac(welcome.proof, expected):
                raise AuthError("it does not know the cluster secret")
    except trio.TooSlowError:
        raise AuthError(f"no answer within {AUTH_TIMEOUT:g} s") from None
    except PeerUnavailable as e:
        raise AuthError(str(e)) from None
    keys = (me, target.number, nonce_a, nonce_b)
    stream.seal(
        frame_key(secret, CALLER_TO_ACCEPTER, *keys), frame_key(secret, ACCEPTER_TO_CALLER, *keys)
    )
    stream.peer = target


async def authenticate_accepter_side(
    stream: PeerStream, secret: bytes | None, me: int, nodes: NodeMap
) -> Node:
    """A connection came in: check who it is (AuthError says why not, for our log;
    the caller is told only REFUSAL)."""
    claimed = nodes.by_address(stream.address[0])
    try:
        with trio.fail_after(AUTH_TIMEOUT):
            hello = await expect(stream, PeerHello, "greeting")
            assert isinstance(hello, PeerHello)
            if not is_hex(hello.nonce):
                raise AuthError("bad greeting: malformed nonce")
            nonce_a, nonce_b = hello.nonce.lower(), secrets.token_hex(NONCE_BYTES)
            await stream.send(PeerChallenge(node=me, nonce=nonce_b))
            proof = await expect(stream, PeerProof, "proof")
            assert isinstance(proof, PeerProof)
            # Checked only now, whatever is wrong: the caller sees the same exchange.
            key = secret if secret is not None else secrets.token_bytes(NONCE_BYTES)
            proven = same_mac(proof.proof, mac(key, "caller", hello.node, me, nonce_a, nonce_b))
            if claimed is None:
                raise AuthError("not in the node map")
            if hello.version != VERSION:
                raise AuthError(f"speaks protocol version {hello.version}, not {VERSION}")
            if hello.node != claimed.number:
                raise AuthError(
                    f"claims to be node {hello.node}, but its address is node {claimed.number}'s"
                )
            if hello.to_node != me:
                raise AuthError(f"wants node {hello.to_node}; this is node {me}")
            if secret is None:
                raise AuthError("no cluster secret is configured here")
            if not proven:
                raise AuthError(f"wrong cluster secret (as node {claimed.number})")
            welcome = mac(secret, "accepter", claimed.number, me, nonce_a, nonce_b)
            await stream.send(PeerWelcome(proof=welcome))
    except trio.TooSlowError:
        raise AuthError(f"did not authenticate within {AUTH_TIMEOUT:g} s") from None
    except PeerUnavailable as e:
        raise AuthError(str(e)) from None
    assert claimed is not None and secret is not None
    keys = (claimed.number, me, nonce_a, nonce_b)
    stream.seal(
        frame_key(secret, ACCEPTER_TO_CALLER, *keys), frame_key(secret, CALLER_TO_ACCEPTER, *keys)
    )
    stream.peer = claimed
    return claimed
