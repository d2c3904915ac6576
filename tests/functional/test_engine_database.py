"""Database failure paths on a real MariaDB: a lock held by another transaction makes the worker's fenced
commit time out (InnoDB error 1205, the same class as a deadlock or a Galera certification failure). It
counts as a lost race: the pass is retried with jitter, after the controller already applied the batch,
and the root still converges exactly (the retry meets a 412, repairs, and goes on)."""

import logging
import threading
import time

import httpx
import pytest
from engine_support import assert_converged, change, client, make_worker, new_store, record, settle
from sqlalchemy import event, text

from converge.core.errors import RaceLost
from converge.testing.fabric import FabricProcess
from converge.testing.mariadb import MariaDB

pytestmark = pytest.mark.mariadb


def test_a_lock_wait_timeout_in_the_fenced_commit_is_a_lost_race_and_the_root_converges(mariadb_url, fabric):
    engine = new_store(mariadb_url)
    engine.dispose()

    @event.listens_for(engine, "connect")
    def short_lock_wait(dbapi_conn, _record):
        with dbapi_conn.cursor() as cur:
            cur.execute("SET SESSION innodb_lock_wait_timeout = 1")

    record(engine, [change("p1", "network", "n1", name="a")])
    worker = make_worker(engine, client(fabric), concurrency=1)
    settle(worker)
    record(engine, [change("p1", "network", "n1", op="update", revision=2, name="b"),
                    change("p1", "network", "n2", name="c")])

    blocker = engine.connect()
    held = blocker.begin()
    blocker.execute(text("SELECT * FROM converge_roots WHERE root = 'p1' FOR UPDATE"))
    try:
        failures: list[BaseException] = []
        original = worker._settle

        def spy(root, outcome):
            if isinstance(outcome, BaseException):
                failures.append(outcome)
            return original(root, outcome)

        worker._settle = spy
        worker.step()
        assert failures and isinstance(failures[0], RaceLost), failures
        assert "1205" in str(failures[0]) or "Lock wait timeout" in str(failures[0])
        assert worker.failures["p1"] == 1
        # The controller applied the batch before the commit failed: it already holds the new state.
        assert fabric.get("/v1/roots/p1/objects/network/n2")["object"]["attributes"] == {"name": "c"}
    finally:
        held.rollback()
        blocker.close()
    settle(worker)
    assert_converged(engine, fabric)
    worker.shutdown()


def synced(fabric: FabricProcess, root: str, network: str) -> bool:
    try:
        fabric.get(f"/v1/roots/{root}/objects/network/{network}")
    except httpx.HTTPStatusError:
        return False
    return True


def test_a_database_outage_is_one_warning_not_a_traceback_per_step_and_the_worker_goes_on(
        tmp_path, fabric, caplog):
    """The store's MariaDB stops under a running worker (polls, sweeps every 0.2 s, maintenance): each
    failure is said once in a line naming it, without a traceback, and the worker syncs again once the
    database is back."""
    server = MariaDB(tmp_path / "mariadb", durable=False)
    server.start()
    try:
        engine = new_store(server.create_database())
        record(engine, [change("p1", "network", "n1", name="a")])
        worker = make_worker(engine, client(fabric), sweep_interval=0.2)
        settle(worker)
        caplog.set_level(logging.DEBUG, logger="converge")
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            server.stop()
            time.sleep(4.0)  # ~80 poll intervals, ~20 sweeps, a maintenance: all failing
            said = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert said, "the outage was not reported at all"
            assert all(r.exc_info is None for r in said), [r.getMessage() for r in said if r.exc_info]
            assert len(said) <= 3, [r.getMessage() for r in said]
            assert all("database unavailable" in r.getMessage() for r in said), [r.getMessage() for r in said]
            server.start()
            record(engine, [change("p1", "network", "n2", name="after")])
            deadline = time.monotonic() + 60
            while not synced(fabric, "p1", "n2"):
                assert time.monotonic() < deadline, "the worker did not sync after the database came back"
                time.sleep(0.1)
        finally:
            worker.stop()
            thread.join(30)
        assert_converged(engine, fabric)
        engine.dispose()
    finally:
        server.stop()
