"""Helpers for the engine's unit tests over ``converge.testing.memory.MemoryBackend``: a SQLite store in the
test's folder, recording through ``record_many``, leases taken and taken over, and reads of what the store
and the in-memory controller hold. No HTTP, no sockets, no mocks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from converge.core import canonical
from converge.core.ids import RootId, WorkerId
from converge.store import db, leases, migrate, sync
from converge.store.intent import Change, desired_doc, record_many
from converge.store.leases import Lease
from converge.store.schema import desired, journal, roots, status
from converge.testing.memory import MemoryBackend


def new_store(tmp_path: Path) -> Engine:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'store.sqlite'}")
    migrate.upgrade(engine)
    return engine


def change(root: str, kind: str, oid: str, op: str = "create", revision: int = 1, **attributes: Any) -> Change:
    return Change.build(root=root, kind_=kind, id_=oid, op=op,
                        attributes=None if op == "delete" else attributes, revision=revision)


def record(engine: Engine, *changes: Change) -> None:
    with engine.begin() as conn:
        record_many(conn, changes)


def take(engine: Engine, root: str, owner: str = "worker-a") -> Lease:
    """Lease ``root`` for ``owner``, taking it over (the old lease made to expire) if someone holds it."""
    with engine.begin() as conn:
        leases.ensure_roots(conn, [RootId(root)])
        conn.execute(update(roots).where(roots.c.root == root, roots.c.owner != owner).values(expires_at=0.0))
        lease = leases.acquire(conn, RootId(root), WorkerId(owner), 60.0)
    assert lease is not None
    return lease


def desired_docs(engine: Engine, root: str) -> dict[tuple[str, str], canonical.ObjectDoc]:
    with engine.connect() as conn:
        rows = conn.execute(select(desired).where(desired.c.root == root)).mappings()
        return {(r["kind"], r["id"]): desired_doc(r) for r in rows}


def states(engine: Engine) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(kind, id) -> (state, message) of every status row."""
    with engine.connect() as conn:
        return {(r.kind, r.id): (r.state, r.message) for r in conn.execute(select(status))}


def acked(engine: Engine, root: str) -> int:
    with engine.connect() as conn:
        state = sync.root_state(conn, RootId(root))
    assert state is not None
    return state.acked


def journal_keys(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [(r.kind, r.id) for r in conn.execute(select(journal.c.kind, journal.c.id))]


def assert_in_step(engine: Engine, backend: MemoryBackend, root: str) -> None:
    """The controller holds exactly the root's desired objects, the store acknowledges its fingerprint, and
    every object of the root is synced."""
    assert backend.docs(root) == desired_docs(engine, root)
    assert acked(engine, root) == canonical.combine(d.digest() for d in desired_docs(engine, root).values())
    with engine.connect() as conn:
        rows = conn.execute(select(status.c.kind, status.c.id, status.c.state).where(status.c.root == root)).all()
    assert {(r.kind, r.id): r.state for r in rows} == {k: "synced" for k in desired_docs(engine, root)}
