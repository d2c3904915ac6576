"""The root queue: which roots to reconcile, and when. Pure: no database, no controller, a clock given in.

Modelled on controller-runtime's workqueue (client-go's rate-limiting delaying queue):

- :meth:`RootQueue.add` makes a root ready now; a root is queued at most once;
- :meth:`RootQueue.add_after` makes it ready after a delay; a root waiting twice keeps the earlier time;
- :meth:`RootQueue.add_rate_limited` counts a failure and makes it ready after the backoff for that count
  (exponential with jitter, :class:`~converge.engine.backoff.Backoff`); :meth:`RootQueue.forget` resets
  the count (a pass succeeded);
- :meth:`RootQueue.get` hands out ready roots (at most one pass per root at a time: a root being worked on
  is not handed out again) and :meth:`RootQueue.done` ends the pass: a root added meanwhile is ready again.

One difference, on purpose: a root backing off after failures is *not* brought forward by :meth:`add`.
A controller that is down would otherwise be hammered by every new change of every root; the backoff ends
when it ends, or when :meth:`retry_now` says the controller answers again, or on :meth:`forget`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from converge.core.clock import Clock
from converge.core.ids import RootId
from converge.engine.backoff import Backoff


class RootQueue:
    def __init__(self, clock: Clock, backoff: Backoff) -> None:
        self.clock = clock
        self.backoff = backoff
        self._ready: dict[RootId, float] = {}  # root -> priority (lower first)
        self._waiting: dict[RootId, float] = {}  # root -> monotonic time it becomes ready
        self._active: set[RootId] = set()  # handed out by get(), not done() yet
        self._dirty: dict[RootId, float] = {}  # added while active: ready again at done()
        self._failures: dict[RootId, int] = {}

    # -- adding --------------------------------------------------------------------------------------
    def add(self, root: RootId, *, priority: float = math.inf) -> None:
        """Ready now (unless it is backing off after failures); ``priority`` orders ready roots, lower
        first (the worker gives the position of the root's oldest journal change); the lowest wins."""
        if self._backing_off(root):
            return
        self._waiting.pop(root, None)
        self._mark(root, priority)

    def add_after(self, root: RootId, delay: float) -> None:
        """Ready in ``delay`` seconds (now if ``delay`` ≤ 0); a root already ready stays ready, a root
        already waiting keeps the earlier of its two times."""
        if delay <= 0:
            self._waiting.pop(root, None)
            self._mark(root, math.inf)
            return
        if root in self._ready or root in self._dirty:
            return
        at = self.clock.monotonic() + delay
        self._waiting[root] = min(at, self._waiting.get(root, math.inf))

    def add_rate_limited(self, root: RootId, delay: float | None = None) -> float:
        """Count a failure and wait: ``delay`` if given (the controller said how long), else the backoff
        for the failure count. Returns the delay."""
        n = self._failures.get(root, 0) + 1
        self._failures[root] = n
        wait = self.backoff.delay(n) if delay is None else delay
        self._ready.pop(root, None)
        self._dirty.pop(root, None)
        self._waiting[root] = self.clock.monotonic() + wait
        return wait

    def forget(self, root: RootId) -> None:
        """The root's last pass succeeded: its failure count starts again from zero."""
        self._failures.pop(root, None)

    def discard(self, root: RootId) -> None:
        """Drop every trace of the root (its lease is gone: another worker owns it now)."""
        self._ready.pop(root, None)
        self._waiting.pop(root, None)
        self._dirty.pop(root, None)
        self._failures.pop(root, None)

    def retry_now(self) -> list[RootId]:
        """The controller answers again: roots backing off after failures are ready at once (their delays
        grew while it was away). Failure counts stay, so a root that fails again backs off further."""
        roots = [r for r in self._waiting if self._failures.get(r)]
        for root in roots:
            del self._waiting[root]
            self._mark(root, math.inf)
        return roots

    # -- taking --------------------------------------------------------------------------------------
    def get(self, limit: int | None = None) -> list[RootId]:
        """Up to ``limit`` ready roots, lowest priority first (then by name), now active."""
        self._promote()
        out = sorted(self._ready, key=lambda r: (self._ready[r], r))[:limit]
        for root in out:
            del self._ready[root]
            self._active.add(root)
        return out

    def done(self, root: RootId) -> None:
        """The pass over ``root`` ended; if it was added meanwhile it is ready again."""
        self._active.discard(root)
        if root in self._dirty:
            self._ready[root] = self._dirty.pop(root)

    # -- looking -------------------------------------------------------------------------------------
    def failures(self, root: RootId) -> int:
        return self._failures.get(root, 0)

    def failing(self) -> dict[RootId, int]:
        return dict(self._failures)

    def next_ready(self) -> float | None:
        """Seconds until a root is ready (0 if one is), None if nothing is queued."""
        self._promote()
        if self._ready:
            return 0.0
        if not self._waiting:
            return None
        return max(0.0, min(self._waiting.values()) - self.clock.monotonic())

    def queued(self) -> set[RootId]:
        """Every root ready, waiting or to be readied when its pass ends."""
        return set(self._ready) | set(self._waiting) | set(self._dirty)

    def __contains__(self, root: object) -> bool:
        return root in self._ready or root in self._waiting or root in self._dirty

    def __len__(self) -> int:
        return len(self.queued())

    # -- inside --------------------------------------------------------------------------------------
    def _backing_off(self, root: RootId) -> bool:
        return bool(self._failures.get(root)) and root in self._waiting \
            and self._waiting[root] > self.clock.monotonic()

    def _mark(self, root: RootId, priority: float) -> None:
        if root in self._active:
            self._dirty[root] = min(priority, self._dirty.get(root, math.inf))
        else:
            self._ready[root] = min(priority, self._ready.get(root, math.inf))

    def _promote(self) -> None:
        now = self.clock.monotonic()
        for root in [r for r, at in self._waiting.items() if at <= now]:
            del self._waiting[root]
            self._mark(root, math.inf)

    def add_all(self, roots: Iterable[RootId]) -> None:
        for root in roots:
            self.add(root)
