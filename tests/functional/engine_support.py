"""Shared helpers for the sync engine's functional tests: a real store (SQLite file or MariaDB), the real
fabric controller process, fast worker settings, audit reads, and the one convergence check every test
ends with.

Nothing here is mocked: the worker talks HTTP to ``python -m converge.fabric`` and SQL to a real database.
Tests poll with deadlines (:func:`eventually`) instead of sleeping; no test asserts a duration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from converge.backends.fabric import FabricClient
from converge.core import canonical
from converge.core.ids import WorkerId
from converge.engine.worker import Worker, WorkerConfig
from converge.store import db, migrate
from converge.store.intent import Change, record_many
from converge.store.leases import LeaseTiming
from converge.store.schema import ObjectState, desired, journal, roots, status
from converge.testing.fabric import FabricProcess

WORKER = "worker-a"  # the default worker id, also the writer name its client sends to the controller
DEADLINE = 60.0  # generous: a 2-core machine running MariaDB, a controller and workers at once
IDLE_TIMEOUT = 60.0


def eventually(probe: Callable[[], Any], what: str, deadline: float = DEADLINE, pause: float = 0.02) -> Any:
    """Poll ``probe`` until it returns a truthy value; fail the test after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        result = probe()
        if result:
            return result
        time.sleep(pause)
    pytest.fail(f"timed out after {deadline:.0f} s waiting for {what}")


# -- store and controller ------------------------------------------------------------------------------

def new_store(url: str) -> Engine:
    engine = db.make_engine(url)
    migrate.upgrade(engine)
    return engine


def client(fabric: FabricProcess | str | list[str], token: str | None = None, *, writer: str = WORKER,
           **options: Any) -> FabricClient:
    if isinstance(fabric, FabricProcess):
        return FabricClient([fabric.url], fabric.token, writer=writer, **options)
    urls = [fabric] if isinstance(fabric, str) else fabric
    assert token is not None
    return FabricClient(urls, token, writer=writer, **options)


def fast_config(**overrides: Any) -> WorkerConfig:
    """Settings that keep tests short: quick polls and backoff, no sweep unless asked for."""
    settings: dict[str, Any] = {
        "poll_interval": 0.01,
        "sweep_interval": 3600.0,
        "backoff_base": 0.05,
        "backoff_cap": 0.5,
        "blocked_retry": 0.2,
        "concurrency": 2,
        "lease": LeaseTiming(duration=30.0, renew_every=5.0, renew_deadline=20.0, retry_period=0.2),
    }
    settings.update(overrides)
    return WorkerConfig(**settings)


def make_worker(engine: Engine, backend: FabricClient, name: str = WORKER, **overrides: Any) -> Worker:
    return Worker(engine, backend, fast_config(**overrides), worker_id=WorkerId(name))


def record(engine: Engine, changes: Iterable[Change], per_transaction: int = 200) -> int:
    """Record changes through ``record_many`` in transactions of ``per_transaction``; return how many."""
    n = 0
    chunk: list[Change] = []
    for ch in changes:
        chunk.append(ch)
        if len(chunk) >= per_transaction:
            with engine.begin() as conn:
                record_many(conn, chunk)
            n += len(chunk)
            chunk = []
    if chunk:
        with engine.begin() as conn:
            record_many(conn, chunk)
        n += len(chunk)
    return n


def change(root: str, kind: str, oid: str, op: str = "create", revision: int = 1, **attributes: Any) -> Change:
    return Change.build(root=root, kind_=kind, id_=oid, op=op,
                        attributes=None if op == "delete" else attributes, revision=revision)


def settle(worker: Worker, timeout: float = IDLE_TIMEOUT) -> None:
    assert worker.run_until_idle(timeout), "the worker did not become idle"


# -- reading the store ---------------------------------------------------------------------------------

def store_desired(engine: Engine) -> dict[tuple[str, str], tuple[str, dict[str, Any], int]]:
    """(kind, id) -> (root, attributes, revision) of every desired row."""
    with engine.connect() as conn:
        return {(r.kind, r.id): (r.root, json.loads(r.attributes), int(r.revision))
                for r in conn.execute(select(desired))}


def store_roots(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {r.root: r for r in conn.execute(select(roots))}


def journal_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(journal.c.seq)).all())


def statuses(engine: Engine) -> dict[tuple[str, str], Any]:
    with engine.connect() as conn:
        return {(r.kind, r.id): r for r in conn.execute(select(status))}


# -- reading the controller ----------------------------------------------------------------------------

def controller_objects(fabric: FabricProcess, root: str) -> dict[tuple[str, str], tuple[str, dict[str, Any], int]]:
    return {(o["kind"], o["id"]): (root, o["attributes"], int(o["revision"])) for o in fabric.objects(root)}


def controller_roots(fabric: FabricProcess) -> dict[str, str]:
    """Non-empty roots on the controller with their ETags."""
    out: dict[str, str] = {}
    params: dict[str, str | int] = {"limit": 1000}
    while True:
        page = fabric.get("/v1/roots", params=params)
        out.update({r["root"]: r["etag"] for r in page["roots"]})
        if not page["next"]:
            return out
        params["after"] = page["next"]


def audit(fabric: FabricProcess, after: int = 0) -> list[dict[str, Any]]:
    """Every audit entry with ``seq > after``, oldest first."""
    out: list[dict[str, Any]] = []
    while True:
        page = fabric.get("/v1/audit", params={"after": after, "limit": 1000})
        out.extend(page["entries"])
        if page["next"] is None:
            return out
        after = page["next"]


def last_seq(fabric: FabricProcess) -> int:
    entries = audit(fabric)
    return int(entries[-1]["seq"]) if entries else 0


# -- the convergence check -----------------------------------------------------------------------------

def assert_converged(engine: Engine, fabric: FabricProcess,
                     expected: Mapping[tuple[str, str], tuple[str, dict[str, Any], int]] | None = None) -> None:
    """The controller holds exactly the store's desired objects (kind, id, root, attributes, revision),
    every root's controller ETag is the stored acknowledged fingerprint, nothing is pending, in error or
    blocked; and, when given, ``expected`` (e.g. the generator's ``desired()``) is what the store holds."""
    want = store_desired(engine)
    if expected is not None:
        assert want == dict(expected), "the store's desired state is not what the generator produced"
    remote_roots = controller_roots(fabric)
    names = set(store_roots(engine)) | {r for r, _, _ in want.values()} | set(remote_roots)
    have: dict[tuple[str, str], tuple[str, dict[str, Any], int]] = {}
    for root in sorted(names):
        have.update(controller_objects(fabric, root))
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    differing = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    assert not (missing or extra or differing), (
        f"controller differs from intent: {len(missing)} missing {missing[:3]}, {len(extra)} extra "
        f"{extra[:3]}, {len(differing)} differing {differing[:3]}")
    local = store_roots(engine)
    for root in sorted(names):
        etag = remote_roots.get(root, canonical.etag(0))
        stored = local[root].acked if root in local else canonical.hex256(0)
        assert etag == f'"{stored}"', f"root {root}: controller ETag {etag} != acknowledged {stored}"
    assert journal_count(engine) == 0, "journal rows left"
    bad = {k: (r.state, r.message) for k, r in statuses(engine).items() if r.state != ObjectState.SYNCED.value}
    assert not bad, f"objects not synced: {list(bad.items())[:5]}"


# -- CLI subprocesses ----------------------------------------------------------------------------------

def cli_env(fabric: FabricProcess | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERGE_")}
    env["PYTHONUNBUFFERED"] = "1"
    if fabric is not None:
        env["CONVERGE_CONTROLLERS"] = fabric.url
        env["CONVERGE_TOKEN_FILE"] = str(fabric.token_file)
    env.update(extra)
    return env


def converge_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "converge.cli.main", *args]


def run_cli(*args: str, env: Mapping[str, str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(converge_cmd(*args), env=dict(env), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


class WorkerProcess:
    """``converge sync run`` in its own process; stopped by its PID."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(converge_cmd("sync", "run", *args), env=dict(env), stdout=self._log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, sig: int) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def stop(self) -> int | None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
