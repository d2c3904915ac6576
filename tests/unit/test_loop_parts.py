"""Backoff, circuit breaker and rendezvous ownership: pure logic, on a fake clock."""

import random

from converge.backends.breaker import BreakerState, CircuitBreaker
from converge.engine.backoff import Backoff
from converge.engine.membership import owner
from converge.testing.clock import FakeClock


def test_backoff_grows_exponentially_within_jitter_and_cap():
    b = Backoff(base=0.5, cap=8.0, rng=random.Random(1))
    for n, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (20, 8.0)]:
        for _ in range(50):
            assert ceiling / 2 <= b.delay(n) <= ceiling


def test_backoff_after_a_weekend_of_failures_stays_at_the_cap():
    """A root failing every 30 s through a long controller outage reaches 1,024 failures in 8.5 h: 2^1023 and
    beyond do not fit a float (it raised OverflowError, and the worker went on failing around it)."""
    b = Backoff(base=0.5, cap=30.0, rng=random.Random(1))
    for n in (1_025, 10_000, 10**9):
        assert 15.0 <= b.delay(n) <= 30.0


def test_breaker_opens_after_threshold_then_half_opens_then_closes():
    clock = FakeClock()
    br = CircuitBreaker(threshold=3, reset_after=5.0, clock=clock)
    for _ in range(2):
        br.failed("refused")
    assert br.state is BreakerState.CLOSED and br.allows()
    br.failed("refused")
    assert br.state is BreakerState.OPEN and not br.allows()
    clock.advance(5.0)
    assert br.state is BreakerState.HALF_OPEN and br.allows()
    br.failed("still refused")  # the trial call failed: open again at once
    assert br.state is BreakerState.OPEN
    clock.advance(5.0)
    br.succeeded()
    assert br.state is BreakerState.CLOSED and br.failures == 0


def test_rendezvous_splits_roots_and_moves_only_the_leavers_roots():
    roots = [f"project-{i}" for i in range(1000)]
    two = {r: owner(r, ["w1", "w2"]) for r in roots}
    share = sum(1 for w in two.values() if w == "w1") / len(roots)
    assert 0.4 < share < 0.6
    three = {r: owner(r, ["w1", "w2", "w3"]) for r in roots}
    moved = [r for r in roots if two[r] != three[r]]
    assert all(three[r] == "w3" for r in moved)  # only roots won by the newcomer move
    assert owner("x", []) is None
