"""The controller's persistent object store: batches, fingerprints, port status, and its own faults.

Why one class: a batch must be checked against, and applied to, the in-memory index (fast, sees the
batch's own earlier operations) and SQLite (durable) as one atomic step. :meth:`Store.apply_batch` does
both: the root's epoch fence is checked first (``fence.py``), then every operation is checked and applied
to the index under an undo log; then all touched rows, the new sums, the moved fence and the audit entry
are written in one SQLite transaction. Any refusal or failure rolls both back, so nothing of a refused
batch is ever visible. Pure of HTTP: refusals are :class:`~converge.fabric.errors.FabricError`. Called by
``app.py``, ``ports.py``, ``faults.py`` and the unit tests; SQL reads live in ``queries.py``, injected
drift (wipe/drop/corrupt) in ``drift.py``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from converge.core.canonical import BadETag, etag, hex256, parse_etag
from converge.core.ids import ObjectId, RootId
from converge.core.kinds import Kind
from converge.fabric import audit, fence, schema
from converge.fabric.errors import ErrorCode, FabricError
from converge.fabric.index import Entry, Index, PortStatus
from converge.fabric.operations import Delete, Key, Operation, Put
from converge.fabric.validate import Checks, check_put

MAX_CHILDREN_NAMED = 10
_EVENT_SEQ = "event_seq"


@dataclass(frozen=True)
class BatchResult:
    fingerprint: int
    objects: int
    applied: int
    created_ports: tuple[Key, ...]


@dataclass(frozen=True)
class PortEvent:
    """A port status change, numbered by the persistent event sequence (SSE ``id``)."""

    seq: int
    root: RootId
    id: ObjectId
    status: PortStatus


def key_json(key: Key, root: RootId | None = None) -> dict[str, str]:
    named = {"kind": key[0].value, "id": key[1]}
    return named if root is None else {"root": root, **named}


class Store:
    """Objects of every root, in SQLite and in the in-memory :class:`Index`, changed only atomically."""

    def __init__(self, conn: sqlite3.Connection, *, audit_keep: int = schema.AUDIT_KEEP,
                 clock: Callable[[], float] = time.time) -> None:
        self.conn = conn
        self.index = Index()
        self.audit_keep = audit_keep
        self.clock = clock
        self._load()

    @classmethod
    def open(cls, path: Path | str, *, audit_keep: int = schema.AUDIT_KEEP) -> Store:
        return cls(schema.connect(path), audit_keep=audit_keep)

    def close(self) -> None:
        self.conn.close()

    def _load(self) -> None:
        refs: dict[Key, list[Key]] = {}
        for ck, cid, pk, pid in self.conn.execute(
                "SELECT child_kind, child_id, parent_kind, parent_id FROM refs"):
            refs.setdefault((Kind(ck), cid), []).append((Kind(pk), pid))
        for k, oid, root, bucket, digest, status in self.conn.execute(
                "SELECT kind, id, root, bucket, digest, status FROM objects"):
            key = (Kind(k), ObjectId(oid))
            self.index.load_object(key, Entry(RootId(root), int(digest, 16), bucket,
                                              tuple(refs.get(key, ())),
                                              PortStatus(status) if status else None))
        for root, fingerprint, count in self.conn.execute("SELECT root, fingerprint, objects FROM roots"):
            self.index.load_root(RootId(root), int(fingerprint, 16), count)
        for root, bucket, total, count in self.conn.execute("SELECT root, bucket, sum, objects FROM buckets"):
            self.index.load_bucket(RootId(root), bucket, int(total, 16), count)
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (_EVENT_SEQ,)).fetchone()
        self.event_seq: int = row[0] if row else 0

    # -- batches ----------------------------------------------------------------------------------------

    def apply_batch(self, root: RootId, operations: Sequence[Operation], *, if_match: str,
                    writer: str | None, checks: Checks, epoch: int | None = None) -> BatchResult:
        """Apply every operation or none; refusals raise FabricError naming the failing ``index``.

        ``epoch`` (the writer's lease epoch, None or 0 for none) is checked against the root's fence
        before anything else and moves it when the batch applies. The caller logs refused attempts
        (:meth:`record_refused`); an applied batch is logged here, in its own transaction.
        """
        current = self.index.fingerprint(root)
        self.check_fence(root, epoch)
        if not _matches(if_match, current):
            raise FabricError(ErrorCode.PRECONDITION_FAILED,
                              f"If-Match {if_match!r} is not root {root}'s ETag {etag(current)}",
                              extra={"etag": etag(current)})
        created: dict[Key, None] = {}  # an ordered set: ports that exist only since this batch

        def work(docs: dict[Key, bytes]) -> list[audit.Attempt]:
            for op in operations:
                if isinstance(op, Put):
                    self._put(root, op, checks, docs, created)
                else:
                    self._delete(root, op, created)
            return [audit.Attempt(root, writer, if_match, 200, len(operations),
                                  etag(self.index.fingerprint(root)), epoch)]

        self.run(work, fence_to=(root, epoch))
        return BatchResult(self.index.fingerprint(root), self.index.count(root), len(operations),
                           tuple(created))

    def check_fence(self, root: RootId, epoch: int | None) -> None:
        """``412 fenced`` if ``epoch`` is below the root's fence (see ``fence.py``)."""
        fence.check(self.conn, root, epoch, fingerprint=self.index.fingerprint(root))

    def record_refused(self, root: RootId, *, writer: str | None, if_match: str | None, status: int,
                       operations: int, epoch: int | None = None) -> None:
        current = etag(self.index.fingerprint(root))
        attempt = audit.Attempt(root, writer, if_match, status, operations, current, epoch)
        with self.transaction():
            audit.record(self.conn, attempt, now=self.clock(), keep=self.audit_keep)

    def _put(self, root: RootId, op: Put, checks: Checks, docs: dict[Key, bytes],
             created: dict[Key, None]) -> None:
        key = op.key
        parents = check_put(op, checks)
        old = self.index.objects.get(key)
        if old is not None and old.root != root:
            raise FabricError(ErrorCode.ROOT_CONFLICT,
                              f"{key[0].value} {key[1]} exists under root {old.root}, not {root}",
                              index=op.index, extra={"root": old.root})
        for parent in parents:
            if parent not in self.index.objects:
                raise FabricError(ErrorCode.MISSING_PARENT,
                                  f"{key[0].value} {key[1]} names {parent[0].value} {parent[1]}, "
                                  "which does not exist", index=op.index, extra={"parent": key_json(parent)})
        if old is not None and old.digest == op.digest:
            return  # an identical replace: nothing to write, the status stays
        status = None
        if key[0] is Kind.PORT:
            status = old.status if old is not None else PortStatus.DOWN
            if old is None:
                created[key] = None
            else:
                host = op.doc.attributes.get("binding:host_id") or ""
                if host != self._host_of(key, docs):  # wired on another host: down, then up again there
                    status = PortStatus.DOWN
                    if host:
                        created[key] = None
        self.index.set(key, Entry(root, op.digest, op.bucket, parents, status))
        docs[key] = op.canonical

    def _host_of(self, key: Key, docs: dict[Key, bytes]) -> str:
        """The ``binding:host_id`` a port had before this operation (this batch's own write first)."""
        doc = docs.get(key)
        if doc is None:
            row = self.conn.execute("SELECT doc FROM objects WHERE kind = ? AND id = ?", (key[0], key[1])).fetchone()
            doc = row[0] if row is not None else None
        if doc is None:
            return ""
        stored = json.loads(doc)
        return str(stored["attributes"].get("binding:host_id") or "")

    def _delete(self, root: RootId, op: Delete, created: dict[Key, None]) -> None:
        key = op.key
        old = self.index.objects.get(key)
        if old is None or old.root != root:
            return  # delete-if-present is scoped to the batch's root
        kids = self.index.children_of(key)
        if kids:
            named = [key_json(kid, self.index.objects[kid].root) for kid in sorted(kids)[:MAX_CHILDREN_NAMED]]
            raise FabricError(ErrorCode.HAS_CHILDREN,
                              f"{key[0].value} {key[1]} is still named by {len(kids)} object(s)",
                              index=op.index, extra={"children": named})
        self.index.set(key, None)
        created.pop(key, None)

    # -- units of work ------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def run(self, work: Callable[[dict[Key, bytes]], Iterable[audit.Attempt]], *,
            fence_to: tuple[RootId, int | None] | None = None) -> None:
        """Run ``work`` against the index, then write everything it touched through, atomically.

        ``work`` fills the dict with the canonical document of every key it puts and returns the audit
        entries to log with the change; if it raises, or SQLite fails, the index is rolled back.
        ``fence_to``: (root, epoch) the root's fence moves up to, in the same transaction.
        """
        docs: dict[Key, bytes] = {}
        self.index.begin()
        try:
            attempts = list(work(docs))
            with self.transaction():
                self._write_through(docs)
                if fence_to is not None:
                    fence.advance(self.conn, *fence_to)
                now = self.clock()
                for attempt in attempts:
                    audit.record(self.conn, attempt, now=now, keep=self.audit_keep)
        except BaseException:
            self.index.rollback()
            raise
        self.index.commit()

    def _write_through(self, docs: dict[Key, bytes]) -> None:
        changes = self.index.pending()
        upserts: list[tuple[object, ...]] = []
        deletes: list[Key] = []
        refs: list[tuple[str, str, str, str]] = []
        for key in changes.keys:
            entry = self.index.objects.get(key)
            if entry is None:
                deletes.append(key)
                continue
            upserts.append((key[0], key[1], entry.root, entry.bucket, docs[key], hex256(entry.digest),
                            entry.status))
            refs.extend((key[0], key[1], pk, pid) for pk, pid in entry.parents)
        conn = self.conn
        conn.executemany("DELETE FROM refs WHERE child_kind = ? AND child_id = ?", changes.keys)
        conn.executemany("DELETE FROM objects WHERE kind = ? AND id = ?", deletes)
        conn.executemany("INSERT OR REPLACE INTO objects (kind, id, root, bucket, doc, digest, status)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)", upserts)
        conn.executemany("INSERT INTO refs (child_kind, child_id, parent_kind, parent_id)"
                         " VALUES (?, ?, ?, ?)", refs)
        for root in changes.roots:
            sums = self.index.roots.get(root)
            if sums is None:
                conn.execute("DELETE FROM roots WHERE root = ?", (root,))
            else:
                conn.execute("INSERT OR REPLACE INTO roots (root, fingerprint, objects) VALUES (?, ?, ?)",
                             (root, hex256(sums.fingerprint), sums.count))
        for root, bucket in changes.buckets:
            held = self.index.roots.get(root)
            b = held.buckets.get(bucket) if held else None
            if b is None:
                conn.execute("DELETE FROM buckets WHERE root = ? AND bucket = ?", (root, bucket))
            else:
                conn.execute("INSERT OR REPLACE INTO buckets (root, bucket, sum, objects)"
                             " VALUES (?, ?, ?, ?)", (root, bucket, hex256(b.sum), b.count))

    # -- port status ------------------------------------------------------------------------------------

    def ports_down(self) -> list[Key]:
        return [key for key, entry in self.index.objects.items() if entry.status is PortStatus.DOWN]

    def mark_ports_up(self, keys: Iterable[Key]) -> list[PortEvent]:
        """Set each still-existing ``down`` port ``up``; return one numbered event per change."""
        events: list[PortEvent] = []
        for key in keys:
            entry = self.index.objects.get(key)
            if entry is not None and entry.status is PortStatus.DOWN:
                events.append(PortEvent(self.event_seq + len(events) + 1, entry.root, key[1], PortStatus.UP))
        if not events:
            return events
        with self.transaction():
            self.conn.executemany("UPDATE objects SET status = ? WHERE kind = ? AND id = ?",
                                  [(PortStatus.UP, Kind.PORT, e.id) for e in events])
            self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                              (_EVENT_SEQ, events[-1].seq))
        for e in events:
            self.index.objects[(Kind.PORT, e.id)].status = PortStatus.UP
        self.event_seq = events[-1].seq
        return events


def _matches(if_match: str, fingerprint: int) -> bool:
    # A malformed, weak or "*" If-Match never matches: the writer gets 412 and the current ETag.
    try:
        return parse_etag(if_match) == fingerprint
    except BadETag:
        return False
