"""Shared fixtures: a real MariaDB for the session (started from Debian's package in a temp folder,
stopped by PID) and fresh store databases on SQLite or MariaDB."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from converge.store import db, migrate
from converge.testing.mariadb import MariaDB

_names = itertools.count()


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    server = MariaDB(tmp_path_factory.mktemp("mariadb"), durable=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mariadb_url(mariadb: MariaDB) -> str:
    return mariadb.create_database(f"converge_t{next(_names)}")


@pytest.fixture(params=["sqlite", "mariadb"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return str(request.getfixturevalue("mariadb_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Engine]:
    engine = db.make_engine(store_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()
