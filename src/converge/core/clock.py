"""Clocks. Lease expiry is measured on the database's clock (see store/leases.py); this local clock only
paces loops, backoff and timeouts. ``converge.testing.clock.FakeClock`` implements the same protocol so
loop and backoff tests never sleep."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
