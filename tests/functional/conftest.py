"""Fixtures for the reference fabric controller: a real ``python -m converge.fabric`` process per test,
on a fresh database in the test's temporary folder, stopped by its PID afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from converge.testing.fabric import FabricProcess

PORT_UP_DELAY = 0.2


@pytest.fixture
def fabric_factory(tmp_path: Path) -> Iterator[Callable[..., FabricProcess]]:
    """Start controllers with non-default options: ``fabric_factory(faults=False, extra_args=[...])``."""
    started: list[FabricProcess] = []

    def start(**options: object) -> FabricProcess:
        options.setdefault("port_up_delay", PORT_UP_DELAY)
        process = FabricProcess(tmp_path / f"fabric{len(started)}", **options)  # type: ignore[arg-type]
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def fabric(fabric_factory: Callable[..., FabricProcess]) -> FabricProcess:
    """A controller with fault injection on and a short port-up delay."""
    return fabric_factory()
