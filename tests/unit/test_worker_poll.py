"""The worker's journal poll on a SQLite file: an idle poll checks no connection out of the pool (it keeps
one, in autocommit, so on MariaDB it is one statement instead of ping + query + rollback), and a kept
connection that broke under it (a database restart) is replaced without failing the step."""

from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine

from converge.backends.fabric import FabricClient
from converge.engine.worker import Worker, WorkerConfig
from converge.store import db, migrate
from converge.store.intent import Change, record
from converge.testing.clock import FakeClock


def idle_worker(tmp_path: Path) -> tuple[Engine, Worker]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'store.sqlite'}")
    migrate.upgrade(engine)
    # Never called: nothing is recorded while the worker steps, and the sweep is an hour away.
    backend = FabricClient(["http://127.0.0.1:9"], "token", writer="test")
    config = WorkerConfig(sweep_interval=3600.0, concurrency=1)
    return engine, Worker(engine, backend, config, clock=FakeClock())


def test_idle_polls_reuse_one_connection(tmp_path: Path) -> None:
    engine, worker = idle_worker(tmp_path)
    assert worker.step() is False  # the first step also renews leases and heartbeats
    checkouts: list[object] = []
    statements: list[str] = []
    event.listen(engine, "checkout", lambda *args: checkouts.append(args))
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *rest: statements.append(sql))
    for _ in range(5):
        assert worker.step() is False
    assert checkouts == []
    assert len(statements) == 5 and all("converge_journal" in sql for sql in statements)
    worker.shutdown()


def test_a_broken_poll_connection_is_replaced_in_the_same_poll(tmp_path: Path) -> None:
    engine, worker = idle_worker(tmp_path)
    assert worker._poll() == []
    kept = worker._poll_conn
    assert kept is not None
    kept.connection.dbapi_connection.close()  # as if the database had dropped it
    with engine.begin() as conn:
        record(conn, Change.build(root="p1", kind_="network", id_="n1", op="create", attributes={"name": "a"}))
    assert worker._poll() == ["p1"]
    assert worker._poll_conn is not None and worker._poll_conn is not kept
    worker.shutdown()
    assert worker._poll_conn is None
