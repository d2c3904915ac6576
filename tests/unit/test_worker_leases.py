"""How roots move between workers (SQLite store, in-memory controller, fake clocks for the workers' own
pacing; lease expiry is on the database's clock, so one test waits a second of real time):

- a worker that stops cleanly frees its roots and the others take them at their next membership look
  (every ``membership_interval``), not at their next renewal;
- a worker that dies keeps its roots until its leases expire, and the survivors look again exactly then:
  their next maintenance is scheduled at the earliest expiry of another worker's lease;
- survivors take every root rendezvous hashing gives them, with or without pending work;
- the sweep remembers every differing root as suspect, and a repair clears it.
"""

from __future__ import annotations

import time

from memory_support import assert_in_step, change, record
from sqlalchemy.engine import Engine

from converge.core.ids import RootId, WorkerId
from converge.engine.membership import owner
from converge.engine.worker import Worker, WorkerConfig
from converge.store import leases
from converge.store.leases import Lease, LeaseTiming
from converge.testing.clock import FakeClock
from converge.testing.memory import MemoryBackend

ROOTS = [f"project-{i}" for i in range(6)]


def worker(engine: Engine, backend: MemoryBackend, name: str, clock: FakeClock, lease: LeaseTiming) -> Worker:
    return Worker(engine, backend, WorkerConfig(poll_interval=0.01, sweep_interval=3600.0, concurrency=1,
                                                lease=lease, membership_interval=0.5),
                  worker_id=WorkerId(name), clock=clock)


def fill(engine: Engine) -> None:
    record(engine, *[change(r, "network", f"n-{r}", name=r) for r in ROOTS])


def holding_every_root(engine: Engine, backend: MemoryBackend, timing: LeaseTiming,
                       clock: FakeClock | None = None) -> Worker:
    """Worker A, alone, synced every root and holds them all."""
    a = worker(engine, backend, "worker-a", clock or FakeClock(), timing)
    fill(engine)
    assert a.run_until_idle(10) and set(a.held) == set(ROOTS)
    return a


def test_a_clean_stop_hands_every_root_over_at_the_next_membership_look(engine: Engine) -> None:
    backend = MemoryBackend()
    timing = LeaseTiming(duration=60.0, renew_every=20.0, renew_deadline=40.0)
    a = holding_every_root(engine, backend, timing)
    clock_b = FakeClock()
    b = worker(engine, backend, "worker-b", clock_b, timing)
    b.step()  # B joins: A holds every root, unexpired
    assert b.held == {}
    a.shutdown()  # SIGTERM: A frees its roots and deletes its heartbeat
    clock_b.advance(0.5)  # ... a renewal is 19.5 s away
    b.step()
    assert set(b.held) == set(ROOTS), "B waited for its next renewal to take the roots of a worker that left"
    record(engine, change(ROOTS[0], "network", f"n-{ROOTS[0]}", op="update", revision=2, name="moved"))
    assert b.run_until_idle(10)
    for root in ROOTS:
        assert_in_step(engine, backend, root)
    b.shutdown()


def test_a_dead_workers_roots_are_taken_when_its_leases_expire_work_or_not(engine: Engine) -> None:
    backend = MemoryBackend()
    timing = LeaseTiming(duration=1.0, renew_every=30.0, renew_deadline=0.6)
    holding_every_root(engine, backend, timing)  # then A dies
    # A dies (kill -9): no shutdown, no more renewals. B joins while A's leases still run.
    clock_b = FakeClock()
    b = worker(engine, backend, "worker-b", clock_b, timing)
    b.step()
    assert b.held == {}
    wait = b._next_maintain - clock_b.monotonic()
    assert 0 < wait <= timing.duration + 0.1, f"B's next look is {wait:.2f} s away, not at A's lease expiry"
    time.sleep(wait + 0.1)  # the database's clock decides expiry
    clock_b.advance(wait)
    b.step()
    assert set(b.held) == set(ROOTS), "B did not take the dead worker's roots at their expiry"
    assert all(lease.epoch == 2 for lease in b.held.values()), "a takeover must bump the epoch"
    assert b.idle()  # nothing was pending: taken because rendezvous gives them to B
    b.shutdown()


def test_the_sweep_marks_differing_roots_suspect_and_a_repair_clears_them(engine: Engine) -> None:
    backend = MemoryBackend()
    a = worker(engine, backend, "worker-a", FakeClock(), LeaseTiming())
    fill(engine)
    assert a.run_until_idle(10)
    backend.drift(ROOTS[1], "network", f"n-{ROOTS[1]}", None)  # lost behind Converge's back
    a._sweep()
    assert a.suspect == {RootId(ROOTS[1])} and a.needs_repair == {RootId(ROOTS[1])}
    assert a.run_until_idle(10)
    assert a.suspect == set() and a.needs_repair == set()
    assert_in_step(engine, backend, ROOTS[1])
    a.shutdown()


def test_roots_handed_over_are_taken_at_the_next_membership_look(engine: Engine) -> None:
    backend = MemoryBackend()
    timing = LeaseTiming(duration=60.0, renew_every=20.0, renew_deadline=40.0)
    clock_a, clock_b = FakeClock(), FakeClock()
    a = holding_every_root(engine, backend, timing, clock_a)
    b = worker(engine, backend, "worker-b", clock_b, timing)
    b.step()  # B joins (its renewal is now 20 s away)
    clock_a.advance(0.5)
    a.step()  # A sees B at its membership look and hands B its share
    given = {r for r in ROOTS if r not in a.held}
    assert given, "rendezvous gave B nothing: pick other names"
    clock_b.advance(0.5)
    b.step()
    assert set(b.held) == given, "the roots A handed over stayed unheld until B's next renewal"
    a.shutdown()
    b.shutdown()


def test_children_waiting_for_another_workers_root_go_as_soon_as_it_is_repaired(engine: Engine) -> None:
    """A project's subnet names a network of a root another worker holds; both drift. The project's worker
    holds the subnet back while that root is suspect, and sends it at its next membership look after the
    other worker repaired the root, not at its own next sweep (an hour away here)."""
    backend = MemoryBackend()
    timing = LeaseTiming(duration=60.0, renew_every=20.0, renew_deadline=40.0)
    clock_a, clock_b = FakeClock(), FakeClock()
    a = worker(engine, backend, "worker-a", clock_a, timing)
    b = worker(engine, backend, "worker-b", clock_b, timing)
    a.step()
    b.step()
    clock_a.advance(0.5)
    a.step()  # A sees B
    live = sorted([a.id, b.id])
    assert a.live == b.live == live
    shared = next(f"shared-{i}" for i in range(100) if owner(f"shared-{i}", live) == a.id)
    project = next(f"project-{i}" for i in range(100) if owner(f"project-{i}", live) == b.id)
    record(engine, change(shared, "network", "ext", name="ext"),
           change(project, "subnet", "s1", network_id="ext", cidr="10.0.0.0/24"))
    for _ in range(3):
        a.step()
        b.step()
    assert_in_step(engine, backend, shared)
    assert_in_step(engine, backend, project)
    backend.state.pop(("network", "ext"))  # both lost behind Converge's back, no event
    backend.state.pop(("subnet", "s1"))
    a._sweep()
    b._sweep()
    assert b.suspect == {RootId(shared), RootId(project)}
    assert set(a.held) == {shared} and set(b.held) == {project}
    b.step()  # the project's repair: the subnet waits for its network
    assert ("subnet", "s1") not in backend.state
    a.step()  # the shared root is repaired
    assert_in_step(engine, backend, shared)
    clock_b.advance(0.5)
    b.step()
    assert_in_step(engine, backend, project)
    assert b.suspect == set()
    a.shutdown()
    b.shutdown()


def test_a_repair_releases_children_waiting_for_it_at_once_not_after_blocked_retry(engine: Engine) -> None:
    """One worker holds both roots; the shared root's network is lost and a project's new subnet names it.
    The subnet waits (its parent's root is suspect); the shared root's repair releases it at the next step,
    not ``blocked_retry`` (a minute here) later."""
    backend = MemoryBackend()
    clock = FakeClock()
    a = Worker(engine, backend, WorkerConfig(poll_interval=0.01, sweep_interval=3600.0, concurrency=1,
                                             blocked_retry=60.0, lease=LeaseTiming(duration=60.0, renew_every=20.0,
                                                                                 renew_deadline=40.0)),
               worker_id=WorkerId("worker-a"), clock=clock)
    record(engine, change("shared", "network", "ext", name="ext"), change("project", "network", "n1", name="n1"))
    assert a.run_until_idle(10) and set(a.held) == {"shared", "project"}
    backend.drift("shared", "network", "ext", None)  # lost behind Converge's back, no event
    a._sweep()
    assert a.suspect == {RootId("shared")}
    record(engine, change("project", "subnet", "s1", network_id="ext", cidr="10.0.0.0/24"))
    a.step()  # the project's change first (the journal's oldest), then the shared root's repair
    assert_in_step(engine, backend, "shared")
    assert a.suspect == set()
    assert ("subnet", "s1") not in backend.docs("project"), "the subnet was sent while its network was missing"
    a.step()  # the clock has not moved: blocked_retry is a minute away
    assert_in_step(engine, backend, "project")
    a.shutdown()


def test_a_step_that_fails_mid_run_leaves_no_root_stuck_in_its_pass(engine: Engine) -> None:
    """A root the queue handed out must end its pass even if the step fails around it: left active, it would
    never be handed out again while this worker keeps renewing its lease."""
    backend = MemoryBackend()
    clock = FakeClock()
    a = Worker(engine, backend, WorkerConfig(poll_interval=0.01, sweep_interval=3600.0, concurrency=2,
                                             lease=LeaseTiming(duration=60.0, renew_every=20.0, renew_deadline=40.0)),
               worker_id=WorkerId("worker-a"), clock=clock)
    a.step()
    fill(engine)

    def broken(now: float) -> None:
        raise RuntimeError("a bug in maintenance")

    a._next_maintain = clock.monotonic() + 1.0  # not due when the step starts...
    backend.before_next_apply(lambda: clock.advance(2.0))  # ... but during the first pass
    a._maintain = broken  # type: ignore[method-assign]
    a._acquire = lambda roots, now: [a.held.setdefault(RootId(r), lease) for r, lease in  # type: ignore[method-assign]
                                     zip(roots, take_all(engine, roots), strict=True)]
    try:
        a.step()
    except RuntimeError:
        pass
    else:
        raise AssertionError("the broken maintenance did not fail the step")
    assert not a.queue._active, "roots stuck in a pass that ended"
    del a._maintain, a._acquire
    clock.advance(30.0)
    assert a.run_until_idle(10)
    for root in ROOTS:
        assert_in_step(engine, backend, root)
    a.shutdown()


def take_all(engine: Engine, roots: list[RootId]) -> list[Lease]:
    with engine.begin() as conn:
        leases.ensure_roots(conn, roots)
        taken = leases.acquire_many(conn, roots, WorkerId("worker-a"), 60.0)
    return [taken[r] for r in roots]
