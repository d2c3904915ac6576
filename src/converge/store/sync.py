"""The workers' side of the store: what to drain, what is desired, what the controller holds, and the
fenced commit of a push's outcome.

Called by ``converge.engine`` only. Every write goes through :func:`commit_outcome` or
:func:`record_failure`, which first prove the lease (``leases.guard``) in the same transaction.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Connection

from converge.core import canonical
from converge.core.ids import ObjectId, RootId
from converge.core.kinds import Kind, parents
from converge.store.db import db_now, insert_missing, upsert
from converge.store.intent import key_filter
from converge.store.leases import Lease, guard
from converge.store.schema import JournalOp, ObjectState, desired, journal, roots, status

# (kind value, id). Plain strings on purpose: an Enum member hashes by name, not value.
Key = tuple[str, str]
_CHUNK = 500


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    root: RootId
    kind: str
    id: str
    op: str
    created_at: float


@dataclass(frozen=True)
class DesiredRow:
    root: RootId
    kind: str
    id: str
    attributes: str  # canonical JSON
    revision: int
    digest: int

    @functools.cached_property
    def doc(self) -> canonical.ObjectDoc:
        """Parsed once per row: planning reads it for parents, the push for the payload."""
        return canonical.ObjectDoc(Kind(self.kind), ObjectId(self.id), json.loads(self.attributes),
                                   self.revision)

    @functools.cached_property
    def parents(self) -> list[Key]:
        return [(k.value, pid) for k, pid in parents(Kind(self.kind), self.doc.attributes)]


@dataclass(frozen=True)
class StatusRow:
    root: RootId
    kind: str
    id: str
    state: ObjectState
    pushed: int | None
    error_digest: int | None
    message: str | None
    attempts: int


@dataclass(frozen=True)
class RootState:
    root: RootId
    acked: int
    owner: str | None
    epoch: int
    next_attempt_at: float
    failures: int
    last_error: str | None


@dataclass
class Outcome:
    """What one pass over a root established; committed atomically under the lease."""

    acked: int
    synced: dict[Key, int] = field(default_factory=dict)  # key -> digest now on the controller
    removed: set[Key] = field(default_factory=set)  # gone from controller and from desired
    errors: dict[Key, tuple[int | None, int, str, int]] = field(default_factory=dict)  # pushed, refused, msg, n
    blocked: dict[Key, tuple[int | None, str]] = field(default_factory=dict)  # (pushed, message)
    learned: dict[Key, int | None] = field(default_factory=dict)  # repair: what the controller holds
    drained: list[int] = field(default_factory=list)
    repaired: bool = False  # a repair produced this: clears an operator's repair request
    planned: set[Key] = field(default_factory=set)  # keys repair learned that this pass then planned: their
    # journal rows written by repair (op "repair") are done with


def _hex(value: int | None) -> str | None:
    return None if value is None else canonical.hex256(value)


def _int(value: str | None) -> int | None:
    return None if value is None else int(value, 16)


def _chunks(keys: Iterable[Key]) -> Iterable[list[Key]]:
    items = list(keys)
    for i in range(0, len(items), _CHUNK):
        yield items[i:i + _CHUNK]


def pending_roots(conn: Connection, limit: int = 100_000) -> list[RootId]:
    """Roots with journal rows, the one with the oldest change first (index-only on (root, seq)).

    Oldest first is fair, and it syncs shared parents (an external network, recorded early) before the
    roots whose objects name them, which would otherwise wait a pass as blocked."""
    rows = conn.execute(select(journal.c.root).group_by(journal.c.root)
                        .order_by(func.min(journal.c.seq)).limit(limit))
    return [RootId(r.root) for r in rows]


def read_journal(conn: Connection, root: RootId, limit: int) -> list[JournalEntry]:
    rows = conn.execute(select(journal).where(journal.c.root == root).order_by(journal.c.seq).limit(limit))
    return [JournalEntry(int(r.seq), RootId(r.root), r.kind, r.id, r.op, float(r.created_at)) for r in rows]


def _by_ids(chunk: list[Key]) -> tuple[list[str], set[Key]]:
    # One expanding IN over the primary key's first column; ids are UUIDs, so the kind check that
    # follows in Python rarely drops a row. Cheaper to build and cache than an OR of (kind, id) pairs.
    return sorted({i for _, i in chunk}), set(chunk)


def read_desired(conn: Connection, keys: Iterable[Key]) -> dict[Key, DesiredRow]:
    out: dict[Key, DesiredRow] = {}
    for chunk in _chunks(keys):
        ids, wanted = _by_ids(chunk)
        for r in conn.execute(select(desired).where(desired.c.id.in_(ids))):
            if (r.kind, r.id) in wanted:
                out[(r.kind, r.id)] = DesiredRow(RootId(r.root), r.kind, r.id, r.attributes, int(r.revision),
                                             int(r.digest, 16))
    return out


def _status_row(r: Any) -> StatusRow:
    return StatusRow(RootId(r.root), r.kind, r.id, ObjectState(r.state), _int(r.pushed_digest),
                     _int(r.error_digest), r.message, int(r.attempts))


def read_status(conn: Connection, keys: Iterable[Key]) -> dict[Key, StatusRow]:
    out: dict[Key, StatusRow] = {}
    for chunk in _chunks(keys):
        ids, wanted = _by_ids(chunk)
        for r in conn.execute(select(status).where(status.c.id.in_(ids))):
            if (r.kind, r.id) in wanted:
                out[(r.kind, r.id)] = _status_row(r)
    return out


def blocked_keys(conn: Connection, root: RootId) -> list[Key]:
    rows = conn.execute(select(status.c.kind, status.c.id)
                        .where(status.c.root == root, status.c.state == ObjectState.BLOCKED.value))
    return [(r.kind, r.id) for r in rows]


def blocked_roots(conn: Connection) -> list[RootId]:
    rows = conn.execute(select(status.c.root).distinct().where(status.c.state == ObjectState.BLOCKED.value))
    return [RootId(r.root) for r in rows]


def pushed_in_root(conn: Connection, root: RootId) -> dict[Key, int]:
    """Every object the store believes the controller holds for ``root``, with its digest."""
    rows = conn.execute(select(status.c.kind, status.c.id, status.c.pushed_digest)
                        .where(status.c.root == root, status.c.pushed_digest.is_not(None)))
    return {(r.kind, r.id): int(r.pushed_digest, 16) for r in rows}


def desired_in_root(conn: Connection, root: RootId) -> dict[Key, int]:
    """Every desired object of ``root`` with its digest (for drift reports)."""
    rows = conn.execute(select(desired.c.kind, desired.c.id, desired.c.digest).where(desired.c.root == root))
    return {(r.kind, r.id): int(r.digest, 16) for r in rows}


def root_state(conn: Connection, root: RootId) -> RootState | None:
    r = conn.execute(select(roots).where(roots.c.root == root)).first()
    if r is None:
        return None
    return RootState(RootId(r.root), int(r.acked, 16), r.owner, int(r.epoch), float(r.next_attempt_at),
                     int(r.failures), r.last_error)


def all_acked(conn: Connection) -> dict[RootId, int]:
    return {RootId(r.root): int(r.acked, 16) for r in conn.execute(select(roots.c.root, roots.c.acked))}


def acked_of(conn: Connection, names: Iterable[RootId]) -> dict[RootId, int]:
    wanted = sorted(set(names))
    rows = conn.execute(select(roots.c.root, roots.c.acked).where(roots.c.root.in_(wanted)))
    return {RootId(r.root): int(r.acked, 16) for r in rows}


def commit_outcome(conn: Connection, lease: Lease, outcome: Outcome) -> None:
    """Under the lease: store the acknowledged fingerprint, statuses, and delete the drained journal rows.

    Must run inside one transaction (``engine.begin()``); raises LeaseLost (and the caller rolls back) if
    the lease is gone, so a worker that lost its root never writes for it.
    """
    extra: dict[str, Any] = {"repair_requested": None} if outcome.repaired else {}
    guard(conn, lease, acked=canonical.hex256(outcome.acked), failures=0, last_error=None,
          next_attempt_at=0.0, synced_at=db_now(), **extra)
    rows: list[Mapping[str, Any]] = []
    root = lease.root

    def row(key: Key, state: ObjectState, pushed: int | None, err: int | None = None,
            message: str | None = None, attempts: int = 0) -> None:
        rows.append({"kind": key[0], "id": key[1], "root": root, "bucket": canonical.bucket_of(*key),
                     "state": state.value, "pushed_digest": _hex(pushed), "error_digest": _hex(err),
                     "message": message, "attempts": attempts})

    _learn(conn, root, outcome.learned)
    for key, digest in outcome.synced.items():
        row(key, ObjectState.SYNCED, digest)
    for key, (pushed, refused, message, attempts) in outcome.errors.items():
        row(key, ObjectState.ERROR, pushed, refused, message, attempts)
    for key, (pushed, message) in outcome.blocked.items():
        row(key, ObjectState.BLOCKED, pushed, None, message)
    by_key = {(r["kind"], r["id"]): r for r in rows}  # later facts about a key win
    upsert(conn, status, list(by_key.values()), keys=["kind", "id"],
           update=["root", "bucket", "state", "pushed_digest", "error_digest", "message", "attempts",
                   "updated_at"], fixed={"updated_at": db_now()})
    gone = outcome.removed - by_key.keys()
    for chunk in _chunks(gone):
        conn.execute(delete(status).where(key_filter(status, chunk)))
    for i in range(0, len(outcome.drained), _CHUNK):
        conn.execute(delete(journal).where(journal.c.seq.in_(outcome.drained[i:i + _CHUNK])))
    for chunk in _chunks(outcome.planned):
        conn.execute(delete(journal).where(journal.c.root == root, journal.c.op == JournalOp.REPAIR.value,
                                           key_filter(journal, chunk)))


def _learn(conn: Connection, root: RootId, learned: Mapping[Key, int | None]) -> None:
    """Repair found what the controller really holds: correct ``pushed_digest``, keep states and errors, and
    put each learned key in the journal. The belief now says where the controller differs from intent, but
    only the journal (and blocked objects) make work: if the pass that learned it fails before it pushes the
    fix (the controller changed again: 412 right after repair), the next pass's repair finds nothing new about
    these keys, and without the journal rows nothing would ever plan them again."""
    if not learned:
        return
    conn.execute(journal.insert().values(created_at=db_now()),
                 [{"root": root, "kind": k, "id": i, "op": JournalOp.REPAIR.value} for k, i in learned])
    insert_missing(conn, status, [{"kind": k, "id": i, "root": root, "bucket": canonical.bucket_of(k, i),
                                   "state": ObjectState.PENDING.value, "pushed_digest": None,
                                   "attempts": 0, "updated_at": 0.0} for k, i in learned])
    stmt = (update(status)
            .where(status.c.kind == bindparam("k"), status.c.id == bindparam("i"))
            .values(pushed_digest=bindparam("pushed"), updated_at=db_now()))
    conn.execute(stmt, [{"k": k, "i": i, "pushed": _hex(v)} for (k, i), v in learned.items()])


def repair_requests(conn: Connection) -> list[RootId]:
    return [RootId(r.root) for r in conn.execute(select(roots.c.root).where(roots.c.repair_requested.is_not(None)))]


def request_repair(conn: Connection, names: Iterable[RootId] | None) -> int:
    """Ask the owning workers to repair these roots (all roots with None); returns how many were asked."""
    stmt = update(roots).values(repair_requested=db_now())
    if names is not None:
        stmt = stmt.where(roots.c.root.in_(list(names)))
    return int(conn.execute(stmt).rowcount)


def root_delay(conn: Connection, root: RootId) -> float:
    """Seconds until the root's persisted backoff ends (0 if none), on the database's clock."""
    row = conn.execute(select(roots.c.next_attempt_at - db_now()).where(roots.c.root == root)).first()
    return max(0.0, float(row[0])) if row is not None and row[0] is not None else 0.0


def record_failure(conn: Connection, lease: Lease, *, failures: int, retry_in: float, message: str) -> None:
    """Under the lease: remember a temporary failure and when to try the root again (any worker honours it)."""
    guard(conn, lease, failures=failures, last_error=message[:2000], next_attempt_at=db_now() + retry_in)
