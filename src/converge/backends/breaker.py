"""A circuit breaker per controller URL: after ``threshold`` consecutive failures the URL is skipped for
``reset_after`` seconds, then one trial call is let through (half-open). Keeps a dead controller from
costing every root a connect timeout, and lets failover go straight to a URL that works."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

from converge.core.clock import Clock, SystemClock

log = logging.getLogger(__name__)


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass
class CircuitBreaker:
    threshold: int = 3
    reset_after: float = 5.0
    clock: Clock = field(default_factory=SystemClock)
    name: str = ""  # the URL, for the log lines of state changes
    failures: int = 0
    opened_at: float | None = None
    last_error: str | None = None

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if self.clock.monotonic() - self.opened_at >= self.reset_after:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allows(self) -> bool:
        return self.state is not BreakerState.OPEN

    def succeeded(self) -> None:
        if self.opened_at is not None:
            log.info("controller %s answers again; its circuit is closed", self.name)
        self.failures = 0
        self.opened_at = None
        self.last_error = None

    def failed(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.threshold:
            if self.opened_at is None:  # a trial that fails again is not news
                log.warning("controller %s failed %d times in a row (%s): circuit open, it is skipped for "
                            "%.0f s at a time until it answers", self.name, self.failures, error, self.reset_after)
            self.opened_at = self.clock.monotonic()
