"""The Alembic migrations build exactly the tables the code declares, on SQLite and on MariaDB."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from converge.store import migrate
from converge.store.schema import metadata


def test_migrated_schema_matches_the_models(store):
    with store.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    # The version table is Alembic's, not a model; anything else differing is a migration bug.
    assert [d for d in diff if "converge_alembic_version" not in repr(d)] == []


def test_upgrade_is_idempotent(store):
    migrate.upgrade(store)
    migrate.upgrade(store)
    with store.connect() as conn:
        assert MigrationContext.configure(conn, opts={"version_table": "converge_alembic_version"}) \
            .get_current_heads() == ("0001_initial",)
