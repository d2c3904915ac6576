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
from converge.engine.worker import Worker, WorkerConfig
from converge.store.leases import LeaseTiming
from converge.testing.clock import FakeClock
from converge.testing.memory import MemoryBackend

ROOTS = [f"project-{i}" for i in range(6)]


def worker(engine: Engine, backend: MemoryBackend, name: str, clock: FakeClock, lease: LeaseTiming) -> Worker:
    return Worker(engine, backend, WorkerConfig(poll_interval=0.01, sweep_interval=3600.0, concurrency=1,
                                                lease=lease, membership_interval=0.5),
                  worker_id=WorkerId(name), clock=clock)


def fill(engine: Engine) -> None:
    record(engine, *[change(r, "network", f"n-{r}", name=r) for r in ROOTS])


def test_a_clean_stop_hands_every_root_over_at_the_next_membership_look(engine: Engine) -> None:
    backend = MemoryBackend()
    timing = LeaseTiming(duration=60.0, renew_every=20.0, renew_deadline=40.0)
    a = worker(engine, backend, "worker-a", FakeClock(), timing)
    fill(engine)
    assert a.run_until_idle(10) and set(a.held) == set(ROOTS)
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
    a = worker(engine, backend, "worker-a", FakeClock(), timing)
    fill(engine)
    assert a.run_until_idle(10) and set(a.held) == set(ROOTS)
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
