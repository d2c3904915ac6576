"""The unit tests' store: a SQLite file in the test's folder, migrated (memory_support.new_store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from memory_support import new_store
from sqlalchemy.engine import Engine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    store = new_store(tmp_path)
    yield store
    store.dispose()
