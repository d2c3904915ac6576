"""The Alembic migrations build exactly the tables the code declares, on SQLite and on MariaDB; a database
the first release created (``0001_initial``, when it was the only revision) moves to the expand and
contract heads with its rows; the layout is the one ``neutron-db-manage`` reads (its own checks run in
test_neutron_upgrades.py)."""

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from converge.core.ids import ObjectId, RootId
from converge.core.kinds import Kind
from converge.store import db, intent, migrate
from converge.store.schema import JournalOp, desired, journal, metadata

FIRST_RELEASE = "0001_initial"


@pytest.fixture
def old_store(store_url: str) -> Engine:
    """A store as the first release left it: migrated to 0001_initial, holding some changes."""
    engine = db.make_engine(store_url)
    migrate.upgrade_to(engine, FIRST_RELEASE)
    with engine.begin() as conn:
        intent.record_many(conn, [intent.Change.build(root=f"project-{i % 3}", kind_="network", id_=f"net-{i}",
                                                      op="create", attributes={"name": f"net-{i}"}, revision=1)
                                  for i in range(10)])
    return engine


def differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    # The version table is Alembic's, not a model; anything else differing is a migration bug.
    return [d for d in diff if migrate.VERSION_TABLE not in repr(d)]


def test_migrated_schema_matches_the_models(store):
    assert differences(store) == []


def test_upgrade_is_idempotent(store):
    migrate.upgrade(store)
    migrate.upgrade(store)
    with store.connect() as conn:
        state = migrate.schema_state(conn)
    assert state.stage is migrate.Stage.CURRENT
    assert set(state.current) == set(state.heads) == set(_script().get_heads())


def test_a_first_release_database_moves_to_both_heads_with_its_rows(old_store):
    with old_store.connect() as conn:
        before = migrate.schema_state(conn)
    assert before.stage is migrate.Stage.BEHIND and before.current == (FIRST_RELEASE,)
    migrate.upgrade(old_store)
    with old_store.connect() as conn:
        after = migrate.schema_state(conn)
        assert conn.execute(select(func.count()).select_from(desired)).scalar_one() == 10
        assert conn.execute(select(func.count()).select_from(journal)).scalar_one() == 10
    assert after.stage is migrate.Stage.CURRENT
    assert differences(old_store) == []


def test_expand_then_contract(old_store):
    """What ``neutron-db-manage upgrade --expand`` then ``--contract`` do, through ``converge.store.migrate``;
    changes recorded between the two land as usual."""
    migrate.upgrade(old_store, migrate.Phase.EXPAND)
    with old_store.begin() as conn:
        state = migrate.schema_state(conn)
        intent.record(conn, intent.Change(RootId("project-0"), Kind.NETWORK, ObjectId("net-10"), JournalOp.DELETE))
    assert state.stage is migrate.Stage.CONTRACT_PENDING
    assert state.pending[migrate.Phase.EXPAND] == () and state.pending[migrate.Phase.CONTRACT] != ()
    migrate.upgrade(old_store, migrate.Phase.CONTRACT)
    with old_store.connect() as conn:
        assert migrate.schema_state(conn).stage is migrate.Stage.CURRENT
        assert conn.execute(select(func.count()).select_from(journal)).scalar_one() == 11
    assert differences(old_store) == []


def test_a_revision_this_code_does_not_know_is_ahead(store):
    with store.begin() as conn:
        MigrationContext.configure(conn, opts={"version_table": migrate.VERSION_TABLE}).stamp(
            _script(), "heads")
        conn.execute(text(f"INSERT INTO {migrate.VERSION_TABLE} (version_num) VALUES ('0099_from_the_future')"))
        state = migrate.schema_state(conn)
    assert state.stage is migrate.Stage.AHEAD and state.unknown == ("0099_from_the_future",)


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(migrate.alembic_config())


def test_the_layout_is_neutrons():
    """A branchless start; each branch's first revision carries its label (expand, contract) and hangs off
    the start; every other script sits in versions/<release>/<branch>; the HEAD files name the heads."""
    script = _script()
    by_branch: dict[str, list[str]] = {"expand": [], "contract": []}
    for rev in script.walk_revisions():
        parts = Path(rev.path).parts
        branch = next((b for b in by_branch if b in parts), None)
        if branch is None:
            assert rev.revision == FIRST_RELEASE and not rev.branch_labels, rev.path
            continue
        by_branch[branch].append(rev.revision)
        assert rev.branch_labels <= {branch}, rev.path
        if rev.down_revision == FIRST_RELEASE:
            assert set(rev.module.branch_labels or ()) == {branch}, f"{rev.path}: its first revision names a branch"
    heads = {b: script.get_revision(f"{b}@head").revision for b in by_branch}
    assert all(by_branch.values())
    assert (migrate.VERSIONS / "EXPAND_HEAD").read_text().strip() == heads["expand"]
    assert (migrate.VERSIONS / "CONTRACT_HEAD").read_text().strip() == heads["contract"]


def test_the_cli_applies_only_the_expand_branch_unless_asked(old_store: Engine, store_url: str) -> None:
    """A new release's `converge` commands, pointed at a database older servers still use, must not contract
    it: they apply the expand branch; `converge db upgrade` applies both, or one with --expand / --contract."""
    from engine_support import cli_env, run_cli

    def stage() -> migrate.Stage:
        with old_store.connect() as conn:
            return migrate.schema_state(conn).stage

    status = run_cli("status", "--db", store_url, env=cli_env())
    assert status.returncode == 0, status.stderr
    assert stage() is migrate.Stage.CONTRACT_PENDING
    contract = run_cli("db", "upgrade", "--contract", "--db", store_url, env=cli_env())
    assert contract.returncode == 0 and "contract branch" in contract.stdout, contract.stderr
    assert stage() is migrate.Stage.CURRENT
    both = run_cli("db", "upgrade", "--db", store_url, env=cli_env())
    assert both.returncode == 0 and "schema is up to date" in both.stdout
    exclusive = run_cli("db", "upgrade", "--expand", "--contract", "--db", store_url, env=cli_env())
    assert exclusive.returncode == 2 and "not allowed with" in exclusive.stderr
