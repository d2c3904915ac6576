"""The write log: every batch attempt (applied or refused) and every injected change of state.

Why: when the sync engine's ETag check says "the controller changed behind my back", the log says who
wrote what when, which writer a refused batch came from (``X-Converge-Writer``) and with which lease epoch
(``X-Converge-Epoch``), so a check can prove no stale lease ever wrote (``stale_writes`` in
``converge.testing.fabric``). It is bounded to the most recent entries so a long benchmark cannot fill
the disk. Written by ``state.Store`` (in the batch's own transaction when the batch applies) and read by
``GET /v1/audit``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

MAX_TEXT = 200


@dataclass(frozen=True)
class Attempt:
    """One logged write: ``status`` is the HTTP status answered, ``etag`` the root's ETag afterwards,
    ``epoch`` the lease epoch the batch carried (None: no header, a malformed one, or injected drift)."""

    root: str
    writer: str | None
    if_match: str | None
    status: int
    operations: int
    etag: str
    epoch: int | None = None


def _clip(text: str | None) -> str | None:
    # Headers are the client's to choose; keep one bad writer from bloating every entry.
    return None if text is None else text[:MAX_TEXT]


def record(conn: sqlite3.Connection, attempt: Attempt, *, now: float, keep: int) -> int:
    """Append ``attempt`` and forget entries older than the newest ``keep``; return its sequence number.

    Runs inside the caller's transaction when there is one (an applied batch logs atomically with it).
    """
    cursor = conn.execute(
        "INSERT INTO audit (time, root, writer, if_match, status, operations, etag, epoch)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (now, attempt.root, _clip(attempt.writer), _clip(attempt.if_match), attempt.status,
         attempt.operations, attempt.etag, attempt.epoch),
    )
    seq = cursor.lastrowid
    assert seq is not None  # an INSERT into a rowid table always yields one
    # A range delete on the rowid: usually one row, cheap enough to run on every write.
    conn.execute("DELETE FROM audit WHERE seq <= ?", (seq - keep,))
    return seq


def read(conn: sqlite3.Connection, *, after: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """Entries with ``seq > after``, oldest first, and the ``after`` for the next page (or None)."""
    rows = conn.execute(
        "SELECT seq, time, root, writer, if_match, status, operations, etag, epoch FROM audit"
        " WHERE seq > ? ORDER BY seq LIMIT ?",
        (after, limit + 1),
    ).fetchall()
    entries = [
        {"seq": seq, "time": time, "root": root, "writer": writer, "if_match": if_match, "status": status,
         "operations": operations, "etag": etag, "epoch": epoch}
        for seq, time, root, writer, if_match, status, operations, etag, epoch in rows[:limit]
    ]
    following = entries[-1]["seq"] if len(rows) > limit else None
    return entries, following
