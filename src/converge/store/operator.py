"""Operator actions on the store (``converge retry``): put refused objects back in line.

Retry clears the refusal of the chosen error objects and journals them, so the owning worker re-plans
them (and releases their blocked dependents) on its next pass.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from converge.store.db import db_now
from converge.store.intent import key_filter
from converge.store.schema import JournalOp, ObjectState, journal, status
from converge.store.sync import Key


def retry(conn: Connection, *, root: str | None = None, keys: Iterable[Key] | None = None) -> list[Key]:
    """Retry error objects (of one root, of given keys, or all); returns the keys put back."""
    stmt = select(status.c.root, status.c.kind, status.c.id).where(status.c.state == ObjectState.ERROR.value)
    if root:
        stmt = stmt.where(status.c.root == root)
    chosen = list(keys) if keys is not None else None
    if chosen is not None:
        if not chosen:
            return []
        stmt = stmt.where(key_filter(status, chosen))
    rows = conn.execute(stmt).all()
    if not rows:
        return []
    found = [(r.kind, r.id) for r in rows]
    conn.execute(update(status).where(key_filter(status, found))
                 .values(state=ObjectState.PENDING.value, error_digest=None, message=None,
                         updated_at=db_now()))
    conn.execute(journal.insert().values(created_at=db_now()),
                 [{"root": r.root, "kind": r.kind, "id": r.id, "op": JournalOp.UPDATE.value} for r in rows])
    return found
