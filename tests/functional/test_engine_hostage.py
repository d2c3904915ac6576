"""No worker can hold the others hostage (MariaDB; docs/design/scale-out.md).

A process paused by its host (SIGSTOP, a VM stall, swap) inside a write transaction keeps its row locks.
The others must keep syncing their own roots, keep their leases, and take the paused worker's roots once
its leases expired and its rows are free; the server frees the rows of a client silent inside a write
transaction. Also at the process level: a worker SIGSTOPped while the other keeps working, and the
takeover after SIGTERM and after kill -9.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

import httpx
import pytest
from engine_support import (
    WorkerProcess,
    assert_converged,
    change,
    cli_env,
    client,
    eventually,
    make_worker,
    new_store,
    record,
    store_roots,
)
from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError

from converge.core.ids import RootId, WorkerId
from converge.engine.membership import owner
from converge.store import db, leases
from converge.store.leases import LeaseTiming
from converge.store.schema import roots, workers

pytestmark = pytest.mark.mariadb

A, B = WorkerId("paused-a"), WorkerId("worker-b")
LEASE = 3.0


def roots_of(who: WorkerId, n: int, prefix: str) -> list[str]:
    """``n`` root names rendezvous hashing gives ``who`` while both A and B are alive."""
    return [r for r in (f"{prefix}-{i}" for i in range(200)) if owner(r, [A, B]) == who][:n]


def net(root: str, revision: int = 1) -> list:
    return [change(root, "network", f"{root}-net", "create" if revision == 1 else "update", revision=revision,
                   name=f"v{revision}")]


def test_a_holder_paused_inside_a_write_transaction_holds_no_other_worker_hostage(mariadb_url, fabric, caplog):
    engine = new_store(mariadb_url)
    mine, theirs = roots_of(B, 3, "free"), roots_of(A, 2, "held")
    record(engine, [c for r in mine + theirs for c in net(r)])
    # A takes its roots and heartbeats once, then is "paused" in the middle of a commit: the guard's
    # UPDATE of its roots' rows done, the transaction never finished.
    paused = db.make_engine(mariadb_url)
    with engine.begin() as conn:
        leases.ensure_roots(conn, [RootId(r) for r in theirs])
        leases.heartbeat(conn, A)
        assert set(leases.acquire_many(conn, [RootId(r) for r in theirs], A, LEASE)) == set(theirs)
    hostage = paused.connect()
    hostage.begin()
    hostage.execute(update(roots).where(roots.c.root.in_(theirs)).values(epoch=roots.c.epoch))

    b = make_worker(engine, client(fabric, writer=B), B, concurrency=2,
                    lease=LeaseTiming(duration=LEASE, renew_every=1.0, renew_deadline=2.0, retry_period=0.2))
    lost: list[str] = []
    forget = b._forget
    b._forget = lambda root: (lost.append(root), forget(root))[1]  # type: ignore[method-assign]
    runner = threading.Thread(target=b.run, daemon=True)
    caplog.set_level(logging.INFO, logger="converge")
    try:
        runner.start()
        eventually(lambda: set(mine) <= set(b.held), "B to take its own roots")
        # For twice the lease, B keeps syncing its roots while A's rows stay locked...
        until = time.monotonic() + 2 * LEASE
        revision = 1
        while time.monotonic() < until:
            revision += 1
            record(engine, [c for r in mine for c in net(r, revision)])
            eventually(lambda v=f"v{revision}": all(fabric_has(fabric, r, v) for r in mine),
                       f"B to sync revision {revision} of its roots while A holds its rows")
        # ... A's leases have expired and rendezvous gives its roots to B, but their rows are locked:
        assert not set(theirs) & set(b.held), "B took a root whose row a paused transaction holds"
        assert lost == [], f"B lost leases while A was paused: {lost}"
        assert "1205" not in caplog.text and "Lock wait timeout" not in caplog.text, "B waited on A's locks"
        hostage.rollback()  # A's transaction ends (the server's idle timeout does it for real: next test)
        record(engine, [c for r in theirs for c in net(r, 2)])
        eventually(lambda: set(theirs) <= set(b.held), "B to take A's roots once their rows are free")
        eventually(lambda: all(fabric_has(fabric, r, "v2") for r in theirs), "B to sync A's roots")
        assert all(store_roots(engine)[r].epoch == 2 for r in theirs), "a takeover must bump the epoch"
        assert lost == []
    finally:
        b.stop()
        runner.join(30)
        hostage.close()
        paused.dispose()
        engine.dispose()


def test_the_server_rolls_back_a_write_transaction_whose_client_went_silent(mariadb_url):
    engine = new_store(mariadb_url)
    paused = db.make_engine(mariadb_url)
    db.bound_waits(paused, idle_write=3)  # a worker's sessions use 5 s
    with engine.begin() as conn:
        leases.ensure_roots(conn, [RootId("r1")])
    hostage = paused.connect()
    hostage.begin()
    hostage.execute(update(roots).where(roots.c.root == "r1").values(epoch=roots.c.epoch + 1))
    try:
        other = engine.connect()
        other.execute(text("SET SESSION innodb_lock_wait_timeout = 1"))
        with pytest.raises(OperationalError):  # held: a locking read must wait, and gives up
            other.execute(select(roots.c.epoch).where(roots.c.root == "r1").with_for_update())
        other.rollback()
        time.sleep(4.0)  # the "paused" client says nothing for longer than the bound
        assert other.execute(select(roots.c.epoch).where(roots.c.root == "r1").with_for_update()).scalar() == 0, \
            "the silent transaction was committed, or still holds the row"
        other.rollback()
        other.close()
        with pytest.raises(OperationalError):
            hostage.execute(select(roots.c.epoch))  # its connection was closed by the server
    finally:
        hostage.invalidate()  # never hand it back to the pool: its session may be gone
        hostage.close()
        paused.dispose()
        engine.dispose()


def start_worker(tmp_path, name, url, fabric):
    args = ["--db", url, "--lease-duration", str(LEASE), "--poll-interval", "0.02", "--sweep-interval", "2",
            "--concurrency", "2", "--log-level", "INFO"]
    return WorkerProcess(name, args, cli_env(fabric), tmp_path / f"{name}.log")


def worker_of(engine, pid):
    with engine.connect() as conn:
        return conn.execute(select(workers.c.worker).where(workers.c.pid == pid)).scalar()


def test_a_sigstopped_worker_stalls_no_one_and_its_roots_move_at_expiry_or_at_once_on_sigterm(
        tmp_path, mariadb_url, fabric):
    engine = new_store(mariadb_url)
    procs = [start_worker(tmp_path, n, mariadb_url, fabric) for n in ("wa", "wb")]
    try:
        ids = [eventually(lambda p=p: worker_of(engine, p.pid), "a heartbeat") for p in procs]
        names = [f"stop-{i}" for i in range(12)]
        record(engine, [c for r in names for c in net(r)])
        eventually(lambda: owners(engine, names) == [owner(r, sorted(ids)) for r in names], "the roots split")
        a, b = procs
        a_roots = [r for r in names if owner(r, sorted(ids)) == ids[0]]
        b_roots = [r for r in names if r not in a_roots]
        assert a_roots and b_roots
        a.signal(signal.SIGSTOP)
        stopped = time.monotonic()
        # B syncs its own roots during the pause, at once, not after A's leases expire.
        record(engine, [c for r in b_roots for c in net(r, 2)])
        eventually(lambda: all(fabric_has(fabric, r, "v2") for r in b_roots), "B to sync during A's pause")
        synced_during = time.monotonic() - stopped
        record(engine, [c for r in a_roots for c in net(r, 2)])
        eventually(lambda: all(fabric_has(fabric, r, "v2") for r in a_roots), "B to take A's roots and sync")
        moved = time.monotonic() - stopped
        assert set(owners(engine, a_roots)) == {ids[1]}
        a.signal(signal.SIGCONT)
        eventually(lambda: set(owners(engine, a_roots)) == {ids[0]}, "A to get its roots back")
        # SIGTERM: A gives its roots back at once and B takes them at its next membership look.
        a.signal(signal.SIGTERM)
        termed = time.monotonic()
        eventually(lambda: set(owners(engine, a_roots)) == {ids[1]}, "B to take them on SIGTERM")
        handed = time.monotonic() - termed
        print(f"B synced during the pause in {synced_during:.2f} s; A's roots moved {moved:.2f} s after SIGSTOP "
              f"(lease {LEASE} s); {handed:.2f} s after SIGTERM")
        record(engine, [c for r in a_roots for c in net(r, 3)])
        eventually(lambda: all(fabric_has(fabric, r, "v3") for r in a_roots), "B to sync A's roots")
        assert_converged(engine, fabric)
    finally:
        for p in procs:
            p.stop()
        engine.dispose()


def owners(engine, names):
    held = store_roots(engine)
    return [held[r].owner if r in held else None for r in names]


def fabric_has(fabric, root: str, name: str) -> bool:
    try:
        got = fabric.get(f"/v1/roots/{root}/objects/network/{root}-net")
    except httpx.HTTPStatusError:
        return False
    return bool(got["object"]["attributes"].get("name") == name)
