"""Converge's ``neutron-status upgrade check`` hook, check by check, on stores in every state it reports:
schema absent, behind, contract pending, at head, ahead; no worker, a dead one, a live one; a drained,
a recent and an old journal; objects refused; a database that cannot be reached. (The real
``neutron-status`` runs them in test_neutron_upgrades.py.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text, update
from sqlalchemy.engine import Engine

from converge.core.ids import WorkerId
from converge.neutron import upgrade_checks
from converge.neutron.upgrade_checks import Code
from converge.store import db, intent, leases, migrate
from converge.store.schema import journal, status, workers
from converge.testing.mariadb import free_port


@pytest.fixture(autouse=True)
def options() -> None:
    upgrade_checks.ConvergeChecks()  # registers [converge] (lease_duration: 15 s)


@pytest.fixture
def empty(store_url: str) -> Iterator[Engine]:
    engine = db.make_engine(store_url)
    yield engine
    engine.dispose()


def run(check: Callable[..., upgrade_checks.Result], engine: Engine) -> upgrade_checks.Result:
    return upgrade_checks.on_store(check, engine.url.render_as_string(hide_password=False))


def record(engine: Engine, n: int) -> None:
    with engine.begin() as conn:
        intent.record_many(conn, [intent.Change.build(root="project-1", kind_="network", id_=f"net-{i}",
                                                      op="create", attributes={"name": "n"}, revision=1)
                                  for i in range(n)])


def test_the_schema_at_each_stage(empty):
    absent = run(upgrade_checks.schema, empty)
    assert absent.code is Code.FAILURE and "tables are missing" in absent.details
    assert run(upgrade_checks.workers, empty).code is Code.WARNING  # not checked
    migrate.upgrade_to(empty, "0001_initial")
    behind = run(upgrade_checks.schema, empty)
    assert behind.code is Code.FAILURE and "upgrade --expand" in behind.details and "0001_initial" in behind.details
    assert "not checked" in run(upgrade_checks.journal, empty).details
    migrate.upgrade(empty, migrate.Phase.EXPAND)
    pending = run(upgrade_checks.schema, empty)
    assert pending.code is Code.WARNING and "upgrade --contract" in pending.details
    migrate.upgrade(empty)
    assert run(upgrade_checks.schema, empty).code is Code.SUCCESS
    with empty.begin() as conn:
        conn.execute(text(f"INSERT INTO {migrate.VERSION_TABLE} (version_num) VALUES ('0099_newer')"))
    ahead = run(upgrade_checks.schema, empty)
    assert ahead.code is Code.FAILURE and "0099_newer" in ahead.details


def test_workers_none_dead_and_live(store):
    assert "no sync worker has run" in run(upgrade_checks.workers, store).details
    with store.begin() as conn:
        leases.heartbeat(conn, WorkerId("host-a:1:dead"))
        conn.execute(update(workers).values(heartbeat_at=workers.c.heartbeat_at - 100))
    dead = run(upgrade_checks.workers, store)
    assert dead.code is Code.WARNING and "no live sync worker" in dead.details and "100 s ago" in dead.details
    with store.begin() as conn:
        leases.heartbeat(conn, WorkerId("host-b:2:live"))
    live = run(upgrade_checks.workers, store)
    assert live.code is Code.SUCCESS and "1 live sync worker" in live.details


def test_journal_drained_recent_old_and_refused_objects(store):
    assert run(upgrade_checks.journal, store).details.startswith("journal drained")
    record(store, 3)
    recent = run(upgrade_checks.journal, store)
    assert recent.code is Code.SUCCESS and "3 change(s) pending" in recent.details
    with store.begin() as conn:
        conn.execute(update(journal).values(created_at=journal.c.created_at - 600))
    old = run(upgrade_checks.journal, store)
    assert old.code is Code.WARNING and "the oldest 600 s old" in old.details
    with store.begin() as conn:
        conn.execute(journal.delete())
        conn.execute(status.insert().values(id="net-0", kind="network", root="project-1", bucket=0, state="error",
                                            attempts=1, updated_at=0.0))
    refused = run(upgrade_checks.journal, store)
    assert refused.code is Code.WARNING and "1 object(s) refused" in refused.details


def test_an_unreachable_database_or_a_bad_url_fails_and_no_url_warns():
    down = upgrade_checks.on_store(upgrade_checks.schema, f"mysql+pymysql://x:y@127.0.0.1:{free_port()}/neutron")
    assert down.code is Code.FAILURE and "cannot read Converge's store" in down.details
    assert upgrade_checks.on_store(upgrade_checks.schema, "").code is Code.WARNING
    bad = upgrade_checks.on_store(upgrade_checks.schema, "nosuchdialect://x")
    assert bad.code is Code.FAILURE and "bad database URL" in bad.details
