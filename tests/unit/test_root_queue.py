"""The root queue on a fake clock: no database, no controller, no sleeping."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from converge.core.ids import RootId
from converge.engine.backoff import Backoff
from converge.engine.queue import RootQueue
from converge.testing.clock import FakeClock

A, B, C = RootId("a"), RootId("b"), RootId("c")


def make(base: float = 1.0, cap: float = 8.0) -> tuple[RootQueue, FakeClock]:
    clock = FakeClock()
    return RootQueue(clock, Backoff(base, cap, rng=random.Random(7))), clock


def test_a_root_is_queued_once_and_handed_out_by_priority_then_name() -> None:
    q, _ = make()
    q.add(C)
    q.add(B, priority=1)
    q.add(A)
    q.add(B, priority=5)  # a second add keeps the better priority
    assert len(q) == 3
    assert q.get() == [B, A, C]
    assert q.get() == [] and len(q) == 0


def test_get_respects_the_limit_and_leaves_the_rest_ready() -> None:
    q, _ = make()
    for r in (A, B, C):
        q.add(r)
    assert q.get(2) == [A, B]
    assert q.get(2) == [C]


def test_a_root_added_during_its_pass_is_ready_again_when_the_pass_ends_not_before() -> None:
    q, _ = make()
    q.add(A)
    assert q.get() == [A]
    q.add(A)  # new work arrived while the pass ran
    assert q.get() == [], "handed out twice at once"
    q.done(A)
    assert q.get() == [A]
    q.done(A)
    assert q.get() == []


def test_add_after_waits_and_the_earlier_of_two_times_wins() -> None:
    q, clock = make()
    q.add_after(A, 5.0)
    q.add_after(A, 2.0)
    q.add_after(A, 9.0)
    assert q.get() == [] and q.next_ready() == 2.0
    clock.advance(1.9)
    assert q.get() == []
    clock.advance(0.1)
    assert q.get() == [A]


def test_add_after_leaves_a_ready_root_ready_and_add_brings_a_waiting_root_forward() -> None:
    q, _ = make()
    q.add(A)
    q.add_after(A, 10.0)
    q.add_after(B, 10.0)
    q.add(B)  # e.g. a blocked root's recheck, and then a journal change for it: now
    assert q.get() == [A, B]
    assert q.next_ready() is None


def test_rate_limited_delays_grow_with_failures_and_forget_resets_them() -> None:
    q, clock = make(base=1.0, cap=8.0)
    delays = []
    for _ in range(6):
        delays.append(q.add_rate_limited(A))
        clock.advance(delays[-1])
        assert q.get() == [A]
        q.done(A)
    ceilings = [1, 2, 4, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    assert q.failures(A) == 6
    q.forget(A)
    assert q.failures(A) == 0
    assert q.add_rate_limited(A) <= 1.0


def test_a_root_backing_off_is_not_brought_forward_by_new_work() -> None:
    q, clock = make(base=4.0, cap=4.0)
    wait = q.add_rate_limited(A)
    q.add(A)  # a new journal change: the controller that failed it would be hammered
    assert q.get() == []
    clock.advance(wait)
    assert q.get() == [A]


def test_a_controller_delay_is_honoured_as_given() -> None:
    q, clock = make()
    assert q.add_rate_limited(A, delay=0.25) == 0.25
    clock.advance(0.2)
    assert q.get() == []
    clock.advance(0.05)
    assert q.get() == [A]


def test_retry_now_readies_the_roots_backing_off_only() -> None:
    q, _ = make(base=60.0, cap=60.0)
    q.add_rate_limited(A)
    q.add_after(B, 30.0)  # waiting, but not after a failure (a blocked root's recheck)
    assert q.retry_now() == [A]
    assert q.get() == [A]
    assert q.failures(A) == 1, "the count stays: fail again and the backoff grows"
    assert B in q and q.get() == []


def test_a_failure_during_a_pass_replaces_the_new_work_mark() -> None:
    q, clock = make(base=2.0, cap=2.0)
    q.add(A)
    q.get()
    q.add(A)  # work arrived during the pass
    wait = q.add_rate_limited(A)  # and the pass failed
    q.done(A)
    assert q.get() == [], "a failed root must wait its backoff, not run again at once"
    clock.advance(wait)
    assert q.get() == [A]


def test_discard_drops_every_trace() -> None:
    q, _ = make()
    q.add(A)
    q.add_rate_limited(B)
    q.add_after(C, 1.0)
    for r in (A, B, C):
        q.discard(r)
    assert len(q) == 0 and q.failures(B) == 0 and q.next_ready() is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "after", "limited", "get", "done", "tick", "forget"]),
                          st.sampled_from([A, B, C]), st.floats(0, 5)), max_size=60))
def test_never_hands_out_a_root_twice_at_once_nor_loses_one(ops: list[tuple[str, RootId, float]]) -> None:
    q, clock = make()
    active: set[RootId] = set()
    for op, root, x in ops:
        if op == "add":
            q.add(root)
        elif op == "after":
            q.add_after(root, x)
        elif op == "limited":
            q.add_rate_limited(root)
        elif op == "get":
            got = q.get()
            assert not set(got) & active, "a root handed out while its pass runs"
            assert len(got) == len(set(got))
            active |= set(got)
        elif op == "done" and root in active:
            active.discard(root)
            q.done(root)
        elif op == "tick":
            clock.advance(x)
        elif op == "forget":
            q.forget(root)
    queued = q.queued()
    for root in list(active):
        q.done(root)
    clock.advance(1000.0)  # every delay is over
    assert set(q.get()) == queued, "a queued root was lost, or one appeared from nowhere"
