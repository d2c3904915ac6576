"""Alembic environment for Converge's tables. Runs standalone (``converge db upgrade``, on a connection
``converge.store.migrate`` hands it) and as the subproject ``networking-converge`` of ``neutron-db-manage``
(on Neutron's ``[database] connection``); the version table is Converge's own so it never touches Neutron's.
The layout of the scripts (a start, then ``expand`` and ``contract`` branches): ``converge.store.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, engine_from_config, pool

from converge.store.migrate import VERSION_TABLE
from converge.store.schema import metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
        return
    neutron = getattr(config, "neutron_config", None)  # run by neutron-db-manage as a subproject
    if neutron is not None:
        engine = create_engine(neutron.database.connection, poolclass=pool.NullPool)
    else:
        engine = engine_from_config(config.get_section(config.config_ini_section) or {}, prefix="sqlalchemy.",
                                    poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()


run()
