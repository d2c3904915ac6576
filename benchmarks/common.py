"""Shared set-up for the benchmark scripts: a real controller — the fabric controller process, or OVN's
Northbound DB (ovsdb-server, SB and northd as plain processes) — and a real store (SQLite file or a
throwaway MariaDB), all on this machine, all stopped by PID at the end. Scripts print figures; they
assert nothing (see BENCHMARKS.md for recorded runs)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Engine

from converge.backends.base import Backend
from converge.backends.fabric import FabricClient
from converge.bench.workload import Workload
from converge.core import canonical
from converge.store import db, migrate
from converge.store.intent import Change, record_many
from converge.store.schema import desired
from converge.testing.fabric import FabricProcess
from converge.testing.mariadb import MariaDB
from converge.testing.ovn import OvnControlPlane
from converge.testing.processes import Daemon

T = TypeVar("T")

logging.basicConfig(level=logging.ERROR)  # the engine's warnings (drift found, ...) are expected here


@dataclass
class Rig:
    engine: Engine
    fabric: FabricProcess | None
    workdir: Path
    ovn: OvnControlPlane | None = None

    def client(self, writer: str = "bench") -> Backend:
        if self.ovn is not None:
            from converge.backends.ovn import OvnBackend  # noqa: PLC0415 - only OVN runs load ovsdbapp

            backend = OvnBackend([self.ovn.nb_tcp], timeout=60.0, writer=writer)
            deadline = time.monotonic() + 60
            while not backend.connected() and time.monotonic() < deadline:
                time.sleep(0.05)
            return backend
        assert self.fabric is not None
        return FabricClient([self.fabric.url], self.fabric.token, writer=writer)

    def load(self, roots: int, changes: int, seed: int) -> list[Change]:
        """Record a workload of ``changes`` over ``roots`` roots, 1,000 changes per transaction."""
        out = list(Workload(roots, seed=seed).changes(changes))
        for i in range(0, len(out), 1000):
            with self.engine.begin() as conn:
                record_many(conn, out[i:i + 1000])
        return out

    def sync_workers(self, n: int, *options: str) -> list[Daemon]:
        """``n`` ``converge sync run`` processes on this rig's store and fabric controller, started; the
        caller stops them (by PID: ``Daemon.stop``)."""
        assert self.fabric is not None
        env = dict(os.environ, CONVERGE_DB=self.engine.url.render_as_string(hide_password=False),
                   CONVERGE_CONTROLLERS=self.fabric.url, CONVERGE_TOKEN_FILE=str(self.fabric.token_file))
        cmd = [sys.executable, "-m", "converge.cli.main", "sync", "run", "--log-level", "WARNING", *options]
        procs = [Daemon(f"worker-{i}", cmd, log=self.workdir / f"worker-{i}.log", env=env) for i in range(n)]
        for proc in procs:
            proc.start()
        return procs


@contextlib.contextmanager
def rig(store: str, *, faults: bool = False, backend: str = "fabric") -> Iterator[Rig]:
    with tempfile.TemporaryDirectory(prefix="converge-bench-") as tmp:
        work = Path(tmp)
        fabric: FabricProcess | None = None
        ovn: OvnControlPlane | None = None
        if backend == "ovn":
            ovn = OvnControlPlane(work / "ovn").start()
        else:
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
            yield Rig(engine, fabric, work, ovn)
            engine.dispose()
        finally:
            if fabric is not None:
                fabric.stop()
            if ovn is not None:
                ovn.stop()
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


TICK = os.sysconf("SC_CLK_TCK")


def descendants(pids: list[int]) -> set[int]:
    """``pids`` and every process below them (from ``ps``)."""
    rows = [line.split() for line in subprocess.run(["ps", "-eo", "pid,ppid"], capture_output=True,
                                                     text=True).stdout.splitlines()[1:]]
    children: dict[int, list[int]] = {}
    for pid, parent in rows:
        children.setdefault(int(parent), []).append(int(pid))
    out, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        out.add(pid)
        todo += children.get(pid, [])
    return out


def cpu(pid: int) -> float:
    """CPU seconds (user + system) a process used so far; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def concurrently(work: Callable[[T], object], items: Iterable[T]) -> None:
    """``work(item)`` for every item, each in a thread of its own, all at once (benchmark clients); the first
    error any of them raised is raised here, once all have ended."""
    errors: list[BaseException] = []

    def run(item: T) -> None:
        try:
            work(item)
        except BaseException as err:  # noqa: BLE001 - raised below, in the caller's thread
            errors.append(err)

    threads = [threading.Thread(target=run, args=(item,), daemon=True) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def differing_roots(engine: Engine, backend: Backend) -> list[str]:
    """Roots whose controller ETag is not the fingerprint of their desired objects (none: exact)."""
    digests: dict[str, list[int]] = {}
    with engine.connect() as conn:
        for row in conn.execute(select(desired.c.root, desired.c.digest)):
            digests.setdefault(row.root, []).append(int(row.digest, 16))
    remote = {s.root: s.etag for s in backend.roots()}
    return [root for root, d in digests.items() if remote.get(root, 0) != canonical.combine(d)]
