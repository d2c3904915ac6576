"""A store-only deployment upgraded in place: ``converge db upgrade`` on a store the first release created
(``0001_initial``), on SQLite and on MariaDB, while writers keep recording changes through ``record()`` in
their own transactions as Neutron's do; every change is in the store afterwards and a sync worker drains
them all to the controller."""

from __future__ import annotations

import threading

from engine_support import (
    assert_converged,
    change,
    cli_env,
    client,
    journal_count,
    make_worker,
    record,
    run_cli,
    settle,
    store_desired,
)

from converge.store import db, migrate
from converge.testing.fabric import FabricProcess

WRITERS = 3
AFTER = 5  # changes each writer records once the upgrade has finished


def test_converge_db_upgrade_while_recording_loses_nothing(store_url: str, fabric: FabricProcess):
    engine = db.make_engine(store_url)
    migrate.upgrade_to(engine, "0001_initial")
    before = record(engine, (change(f"project-{i % 3}", "network", f"net-before-{i}", name="b") for i in range(20)))
    upgraded = threading.Event()
    written: list[str] = []
    errors: list[BaseException] = []

    def write(n: int) -> None:
        i = made_after = 0
        try:
            while made_after < AFTER:
                counts = upgraded.is_set()
                oid = f"net-w{n}-{i}"
                record(engine, [change(f"project-{i % 3}", "network", oid, name=oid)])
                written.append(oid)
                made_after += counts
                i += 1
        except BaseException as err:  # noqa: BLE001 - reported by the test
            errors.append(err)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    try:
        done = run_cli("db", "upgrade", "--db", store_url, env=cli_env())
    finally:
        upgraded.set()
        for t in threads:
            t.join(timeout=120)
    assert done.returncode == 0, done.stderr
    assert errors == []
    with engine.connect() as conn:
        assert migrate.schema_state(conn).stage is migrate.Stage.CURRENT
    assert {f"net-before-{i}" for i in range(20)} | set(written) == {oid for _, oid in store_desired(engine)}
    assert journal_count(engine) == before + len(written)
    backend = client(fabric)
    worker = make_worker(engine, backend)
    try:
        settle(worker)
    finally:
        worker.shutdown()
        backend.close()
    assert_converged(engine, fabric)
    engine.dispose()
