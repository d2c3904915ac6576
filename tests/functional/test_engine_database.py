"""Database failure paths on a real MariaDB: a lock held by another transaction makes the worker's fenced
commit time out (InnoDB error 1205, the same class as a deadlock or a Galera certification failure). It
counts as a lost race: the pass is retried with jitter, after the controller already applied the batch,
and the root still converges exactly (the retry meets a 412, repairs, and goes on)."""

import pytest
from engine_support import assert_converged, change, client, make_worker, new_store, record, settle
from sqlalchemy import event, text

from converge.core.errors import RaceLost

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
