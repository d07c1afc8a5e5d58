"""Whether a migration's image travels compressed: ``[cluster] compress``, per link.

"on" and "off" say it for every link; "auto" (the default) compresses to a node
whose link the previous image sent there measured slower than SLOW_BELOW_MBIT.
The measure is the kernel's, from TCP_INFO on the image's connection once the
whole image is written (only images this node sends count): the bytes the target
acknowledged over the time the connection was busy sending (``tcpi_bytes_acked``
/ ``tcpi_busy_time``; time the sender had nothing to send, between pre-copy
rounds or behind a slow compressor, is not busy time).  When most of that time
was limited by the receiver's window or the sender's own buffer (a restorer
slower than the link: ``tcpi_rwnd_limited`` + ``tcpi_sndbuf_limited``), it only
shows the link is at least that fast, so it counts only when it is above the
bound.  Images under 1 MiB measure nothing.  A node never measured is not
compressed
to: its first image measures it.  Compression needs zstd on both nodes: the offer
(or BringHome) asks for it and the other node's answer says whether it is so.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from dataclasses import dataclass, field

log = logging.getLogger("mosixd")

SLOW_BELOW_MBIT = 300.0  # "auto": links measured slower than this are compressed
# struct tcp_info (linux/tcp.h, Linux 4.19+): __u64 tcpi_bytes_acked; and __u64
# tcpi_busy_time, tcpi_rwnd_limited, tcpi_sndbuf_limited (microseconds)
BYTES_ACKED_AT = 120
BUSY_TIME_AT = 168
TCP_INFO_BYTES = 232
MIN_MEASURED_BYTES = 1 << 20


@dataclass(frozen=True)
class Sample:
    mbit: float  # megabits per second
    lower_bound: bool  # limited by the receiver or the sender's buffer, not the link


def delivery_rate(fd: int) -> Sample | None:
    """The rate at which connection ``fd`` delivered while busy (None: not TCP, too
    little sent)."""
    sock = socket.socket(fileno=os.dup(fd))
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BYTES)
    except OSError:
        return None
    finally:
        sock.close()
    if len(info) < BUSY_TIME_AT + 24:
        return None
    (acked,) = struct.unpack_from("=Q", info, BYTES_ACKED_AT)
    busy_us, rwnd_us, sndbuf_us = struct.unpack_from("=QQQ", info, BUSY_TIME_AT)
    if acked < MIN_MEASURED_BYTES or busy_us == 0:
        return None
    return Sample(acked * 8 / busy_us, 2 * (rwnd_us + sndbuf_us) > busy_us)


@dataclass
class LinkRates:
    """The choice of ``[cluster] compress`` and the links' measured rates (Mbit/s)."""

    mode: str = "auto"
    can_compress: bool = False  # zstd here (mosix.native.zpipe.available)
    mbit: dict[int, float] = field(default_factory=dict)

    def compress_to(self, node: int) -> bool:
        """Whether to ask for compression on the link to ``node``."""
        if not self.can_compress or self.mode == "off":
            return False
        if self.mode == "on":
            return True
        rate = self.mbit.get(node)
        return rate is not None and rate < SLOW_BELOW_MBIT

    def note(self, node: int, sample: Sample | None) -> None:
        """A sample of the link to ``node`` from an image sent there."""
        if sample is None:
            return
        if sample.lower_bound and sample.mbit < SLOW_BELOW_MBIT:
            log.info(
                "link to node %d: not measured (%.0f Mbit/s, limited by the ends)",
                node,
                sample.mbit,
            )
            return
        self.mbit[node] = sample.mbit
        log.info(
            "link to node %d: %.0f Mbit/s%s",
            node,
            sample.mbit,
            " or more" if sample.lower_bound else "",
        )
