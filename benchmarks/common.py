"""Shared set-up for the benchmark scripts: a real fabric controller process and a real store (SQLite file
or a throwaway MariaDB), both on this machine, both stopped by PID at the end. Scripts print figures;
they assert nothing (see BENCHMARKS.md for recorded runs)."""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from converge.backends.fabric import FabricClient
from converge.store import db, migrate
from converge.testing.fabric import FabricProcess
from converge.testing.mariadb import MariaDB

logging.basicConfig(level=logging.ERROR)  # the engine's warnings (drift found, ...) are expected here


@dataclass
class Rig:
    engine: Engine
    fabric: FabricProcess
    workdir: Path

    def client(self, writer: str = "bench") -> FabricClient:
        return FabricClient([self.fabric.url], self.fabric.token, writer=writer)


@contextlib.contextmanager
def rig(store: str, *, faults: bool = False) -> Iterator[Rig]:
    with tempfile.TemporaryDirectory(prefix="converge-bench-") as tmp:
        work = Path(tmp)
        fabric = FabricProcess(work / "fabric", faults=faults)
        fabric.start()
        maria: MariaDB | None = None
        try:
            if store == "mariadb":
                maria = MariaDB(work / "mariadb")
                maria.start()
                url = maria.create_database()
            else:
                url = f"sqlite:///{work / 'store.sqlite'}"
            engine = db.make_engine(url, pool_size=8)
            migrate.upgrade(engine)
            yield Rig(engine, fabric, work)
            engine.dispose()
        finally:
            fabric.stop()
            if maria is not None:
                maria.stop()


def machine() -> str:
    cpu = "unknown cpu"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return f"{platform.node()}: {cores} cores, {cpu}, Python {platform.python_version()}"


def report(name: str, figures: dict[str, object]) -> None:
    print(f"\n== {name} ({time.strftime('%Y-%m-%d %H:%M')}, {machine()})")
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"  {key.ljust(width)}  {value}")
    print("json: " + json.dumps({"benchmark": name, **figures}), file=sys.stderr)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]
