"""Exponential backoff with jitter, per root: after ``n`` failures the delay is drawn uniformly from
[c/2, c] with c = min(cap, base * 2^(n-1)). Jitter spreads the retries of many roots (and many workers)
after a controller outage so they don't return as one thundering herd."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, failures: int) -> float:
        # The exponent is clamped: 2^n past ~1,024 failures (8.5 h of a controller away, at a 30 s cap) does
        # not fit a float, and the cap was reached long before anyway.
        ceiling = min(self.cap, self.base * 2.0 ** min(max(0, failures - 1), 64))
        return float(ceiling / 2 + self.rng.uniform(0, ceiling / 2))

    def jitter(self, seconds: float) -> float:
        """A short random pause for lost races (deadlocks, certification failures)."""
        return self.rng.uniform(0, seconds)
