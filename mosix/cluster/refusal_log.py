"""One log line per offending address per interval, however many connections it makes.

The first refused connection from an address is logged at once, with its
reason; later ones within the interval are only counted, and at the end of
the interval one line sums them up (the address stays quiet-but-watched for
one more interval, so a steady flood gives one line per interval).  At most
MAX_ADDRESSES addresses are tracked; refusals from further addresses are
summed up together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("mosixd")

INTERVAL = 60.0  # seconds between two lines about one address
MAX_ADDRESSES = 1024
OTHERS = "other addresses"


@dataclass
class Offender:
    count: int = 0  # refused since the last line about it
    last: str = ""  # the reason of the last one


class RefusalLog:
    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.offenders: dict[str, Offender] = {}

    def refused(self, address: str, port: int, reason: str) -> None:
        """A connection from ``address`` was refused for ``reason``."""
        known = self.offenders.get(address)
        if known is not None:
            known.count += 1
            known.last = reason
            return
        if len(self.offenders) >= MAX_ADDRESSES:
            others = self.offenders.setdefault(OTHERS, Offender())
            others.count += 1
            others.last = reason
            return
        self.offenders[address] = Offender()
        log.warning("cluster: refused connection from %s:%d: %s", address, port, reason)

    def summarise(self) -> None:
        """The end of an interval: one line per address refused since its last line."""
        for address, offender in list(self.offenders.items()):
            if offender.count == 0:
                del self.offenders[address]  # quiet for a whole interval
                continue
            log.warning(
                "cluster: refused %d more connection%s from %s in the last %g s (the last: %s)",
                offender.count,
                "" if offender.count == 1 else "s",
                address,
                self.interval,
                offender.last,
            )
            offender.count = 0
            if address == OTHERS:
                del self.offenders[address]
