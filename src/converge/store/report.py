"""Read-only views for operators (``converge status``, ``journal``): per-root backlog, errors, leases.

These may COUNT and scan: they run on an operator's request, never on the API path or in the drain loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from converge.core.ids import RootId
from converge.store.db import db_now
from converge.store.intent import key_filter
from converge.store.schema import ObjectState, desired, journal, roots, status, workers


@dataclass(frozen=True)
class RootReport:
    root: RootId
    pending: int  # journal rows not drained yet
    oldest_pending_age: float | None  # seconds
    errors: int
    blocked: int
    objects: int  # desired objects
    owner: str | None
    lease_left: float | None  # seconds until the lease expires
    failures: int
    last_error: str | None
    acked: str
    repair_requested: bool


@dataclass(frozen=True)
class WorkerReport:
    worker: str
    host: str
    pid: int
    heartbeat_age: float


@dataclass(frozen=True)
class ObjectReport:
    root: str
    kind: str
    id: str
    state: str
    message: str | None
    attempts: int


def roots_report(conn: Connection, only: Iterable[str] | None = None) -> list[RootReport]:
    now = conn.execute(select(db_now())).scalar_one()
    pend = {r.root: (int(r.n), float(r.oldest)) for r in conn.execute(
        select(journal.c.root, func.count().label("n"), func.min(journal.c.created_at).label("oldest"))
        .group_by(journal.c.root))}
    states: dict[str, dict[str, int]] = {}
    for r in conn.execute(select(status.c.root, status.c.state, func.count().label("n"))
                          .where(status.c.state.in_([ObjectState.ERROR.value, ObjectState.BLOCKED.value]))
                          .group_by(status.c.root, status.c.state)):
        states.setdefault(r.root, {})[r.state] = int(r.n)
    objects = {r.root: int(r.n) for r in conn.execute(
        select(desired.c.root, func.count().label("n")).group_by(desired.c.root))}
    lease_rows = {r.root: r for r in conn.execute(select(roots))}
    names = set(pend) | set(states) | set(objects) | set(lease_rows)
    if only is not None:
        names &= set(only)
    out = []
    for name in sorted(names):
        lr = lease_rows.get(name)
        held = lr is not None and lr.owner is not None and lr.expires_at is not None and lr.expires_at > now
        n, oldest = pend.get(name, (0, None))
        out.append(RootReport(
            root=RootId(name), pending=n, oldest_pending_age=(now - oldest) if oldest is not None else None,
            errors=states.get(name, {}).get(ObjectState.ERROR.value, 0),
            blocked=states.get(name, {}).get(ObjectState.BLOCKED.value, 0),
            objects=objects.get(name, 0), owner=lr.owner if held and lr is not None else None,
            lease_left=(lr.expires_at - now) if held and lr is not None else None,
            failures=int(lr.failures) if lr is not None else 0,
            last_error=lr.last_error if lr is not None else None,
            acked=lr.acked if lr is not None else "0" * 64,
            repair_requested=bool(lr is not None and lr.repair_requested is not None)))
    return out


def workers_report(conn: Connection) -> list[WorkerReport]:
    now = conn.execute(select(db_now())).scalar_one()
    return [WorkerReport(r.worker, r.host, int(r.pid), now - r.heartbeat_at)
            for r in conn.execute(select(workers).order_by(workers.c.worker))]


def problems(conn: Connection, root: str | None = None, limit: int = 100) -> list[ObjectReport]:
    stmt = select(status).where(status.c.state.in_([ObjectState.ERROR.value, ObjectState.BLOCKED.value]))
    if root:
        stmt = stmt.where(status.c.root == root)
    rows = conn.execute(stmt.order_by(status.c.root, status.c.kind, status.c.id).limit(limit))
    return [ObjectReport(r.root, r.kind, r.id, r.state, r.message, int(r.attempts)) for r in rows]


@dataclass(frozen=True)
class JournalReport:
    seq: int
    root: str
    kind: str
    id: str
    op: str
    age: float


def journal_rows(conn: Connection, root: str | None = None, limit: int = 50) -> list[JournalReport]:
    now = conn.execute(select(db_now())).scalar_one()
    stmt = select(journal)
    if root:
        stmt = stmt.where(journal.c.root == root)
    rows = conn.execute(stmt.order_by(journal.c.seq).limit(limit))
    return [JournalReport(int(r.seq), r.root, r.kind, r.id, r.op, now - r.created_at) for r in rows]


def object_detail(conn: Connection, kind: str, oid: str) -> dict[str, object]:
    key = [(kind, oid)]
    d = conn.execute(select(desired).where(key_filter(desired, key))).first()
    s = conn.execute(select(status).where(key_filter(status, key))).first()
    j = conn.execute(select(journal).where(journal.c.kind == kind, journal.c.id == oid)
                     .order_by(journal.c.seq)).all()
    return {"desired": dict(d._mapping) if d else None, "status": dict(s._mapping) if s else None,
            "journal": [dict(r._mapping) for r in j]}


@dataclass(frozen=True)
class Totals:
    """The whole store's backlog at one moment (every root, every worker's): what metrics export."""

    pending: int  # journal rows not drained yet
    oldest_pending_age: float  # seconds; 0 when nothing is pending
    errors: int  # objects the controller refused
    blocked: int  # objects waiting for a parent (or for children to leave)


def totals(conn: Connection) -> Totals:
    """Three small reads: the journal's size, its oldest row (the first by sequence: the primary key, no scan
    of created_at), and the objects not synced by state (an index covers it)."""
    now, count = conn.execute(select(db_now(), func.count()).select_from(journal)).one()
    oldest = conn.execute(select(journal.c.created_at).order_by(journal.c.seq).limit(1)).scalar()
    by_state = {r.state: int(r.n) for r in conn.execute(
        select(status.c.state, func.count().label("n"))
        .where(status.c.state.in_([ObjectState.ERROR.value, ObjectState.BLOCKED.value]))
        .group_by(status.c.state))}
    return Totals(pending=int(count), oldest_pending_age=max(0.0, float(now) - float(oldest)) if oldest else 0.0,
                  errors=by_state.get(ObjectState.ERROR.value, 0), blocked=by_state.get(ObjectState.BLOCKED.value, 0))
