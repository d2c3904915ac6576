"""Lease-epoch fences: per root, the highest ``X-Converge-Epoch`` a batch was applied with.

Why: ``If-Match`` alone lets a writer whose lease was taken over write again as soon as it learns the
root's new ETag (a repair reads it). The fence refuses it for good: a batch whose epoch is below the
root's fence is answered ``412 fenced`` before anything else is checked, and a batch that applies with a
higher epoch moves the fence, in the batch's own SQLite transaction (docs/protocol.md, "Conventions"). The
same rule as the OVN backend's marker rows and ``converge.testing.memory.MemoryBackend``.

What it does not do: a batch without the header, or with epoch 0, claims no lease and is neither checked
nor moves the fence (writers from before fencing keep working); the wipe fault forgets every fence with
the objects (``drift.wipe``). Fences live only in SQLite (one primary-key read per batch), so there is no
in-memory copy to keep in step with a rollback. Called by ``state.Store`` and ``api.py``.
"""

from __future__ import annotations

import re
import sqlite3

from converge.core.canonical import etag
from converge.core.ids import RootId
from converge.fabric.errors import ErrorCode, FabricError, bad_json

HEADER = "X-Converge-Epoch"
_EPOCH = re.compile(r"[0-9]{1,18}")  # below 2^63: an SQLite INTEGER


def parse_epoch(text: str | None) -> int | None:
    """The header's epoch, None if absent; anything but a decimal integer ≥ 0 is ``400 bad_json``."""
    if text is None:
        return None
    if not _EPOCH.fullmatch(text):
        raise bad_json(f"header {HEADER} must be a decimal integer from 0 to 10^18 - 1, not {text[:40]!r}")
    return int(text)


def current(conn: sqlite3.Connection, root: RootId) -> int | None:
    """The root's fence, or None if no batch with an epoch has applied to it (since the last wipe)."""
    row = conn.execute("SELECT epoch FROM fences WHERE root = ?", (root,)).fetchone()
    return None if row is None else int(row[0])


def check(conn: sqlite3.Connection, root: RootId, epoch: int | None, *, fingerprint: int) -> None:
    """Refuse (``412 fenced``, with the fence and the root's ETag) an epoch below the root's fence."""
    if not epoch:
        return
    fence = current(conn, root)
    if fence is not None and epoch < fence:
        raise FabricError(ErrorCode.FENCED,
                          f"{HEADER} {epoch} is below root {root}'s fence {fence}: a writer with a newer "
                          "lease has written it", extra={"epoch": fence, "etag": etag(fingerprint)})


def advance(conn: sqlite3.Connection, root: RootId, epoch: int | None) -> None:
    """Within the caller's transaction, move the root's fence up to ``epoch`` (never down)."""
    if not epoch:
        return
    conn.execute("INSERT INTO fences (root, epoch) VALUES (?, ?)"
                 " ON CONFLICT (root) DO UPDATE SET epoch = max(epoch, excluded.epoch)", (root, epoch))


def forget_all(conn: sqlite3.Connection) -> None:
    """Within the caller's transaction, forget every fence (the wipe fault)."""
    conn.execute("DELETE FROM fences")
