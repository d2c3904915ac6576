"""The in-memory index: where each object lives, who names it, and every root's and bucket's sum.

Why in memory: a batch of hundreds of puts must check parents, children and root ownership per operation
without a SELECT each, and sums are updated in O(1) per object (docs/protocol.md, "Fingerprints"), never
recomputed by scanning. The SQLite tables are the durable copy, written through by ``state.Store`` in the
same transaction as the batch and loaded back at startup.

Atomicity: between :meth:`Index.begin` and :meth:`Index.commit` every change is logged; on
:meth:`Index.rollback` the log is replayed backwards. Sums are modular, so undoing an add is exact.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from converge.core.canonical import add, remove
from converge.core.ids import RootId
from converge.fabric.operations import Key


class PortStatus(enum.StrEnum):
    """A port's operational state: ``down`` when created, ``up`` once the fabric has wired it."""

    DOWN = "down"
    UP = "up"


@dataclass(slots=True)
class Entry:
    """What the index knows of one object; the document itself stays in SQLite."""

    root: RootId
    digest: int
    bucket: int
    parents: tuple[Key, ...]
    status: PortStatus | None = None


@dataclass(slots=True)
class BucketSum:
    sum: int = 0
    count: int = 0


@dataclass(slots=True)
class RootSums:
    fingerprint: int = 0
    count: int = 0
    buckets: dict[int, BucketSum] = field(default_factory=dict)


@dataclass(frozen=True)
class Changes:
    """What one committed unit of work touched: the rows the store must write through."""

    keys: frozenset[Key]
    buckets: frozenset[tuple[RootId, int]]

    @property
    def roots(self) -> frozenset[RootId]:
        return frozenset(root for root, _ in self.buckets)


class Index:
    """Objects, the child index of references, and sums; changed only inside begin/commit."""

    def __init__(self) -> None:
        self.objects: dict[Key, Entry] = {}
        self.children: dict[Key, set[Key]] = {}
        self.roots: dict[RootId, RootSums] = {}
        self._undo: list[tuple[Key, Entry | None]] | None = None
        self._touched: set[tuple[RootId, int]] = set()

    # -- loading (startup): sums come from their tables, never from the objects ---------------------

    def load_object(self, key: Key, entry: Entry) -> None:
        self.objects[key] = entry
        self._link(key, entry.parents)

    def load_root(self, root: RootId, fingerprint: int, count: int) -> None:
        sums = self.roots.setdefault(root, RootSums())
        sums.fingerprint, sums.count = fingerprint, count

    def load_bucket(self, root: RootId, bucket: int, total: int, count: int) -> None:
        self.roots.setdefault(root, RootSums()).buckets[bucket] = BucketSum(total, count)

    # -- reads ----------------------------------------------------------------------------------------

    def fingerprint(self, root: RootId) -> int:
        sums = self.roots.get(root)
        return sums.fingerprint if sums else 0

    def count(self, root: RootId) -> int:
        sums = self.roots.get(root)
        return sums.count if sums else 0

    def bucket_sums(self, root: RootId) -> dict[int, BucketSum]:
        sums = self.roots.get(root)
        return dict(sums.buckets) if sums else {}

    def children_of(self, key: Key) -> set[Key]:
        return self.children.get(key, set())

    # -- changes ----------------------------------------------------------------------------------------

    def begin(self) -> None:
        if self._undo is not None:
            raise RuntimeError("a unit of work is already open on the index")
        self._undo = []
        self._touched = set()

    def set(self, key: Key, entry: Entry | None) -> Entry | None:
        """Put ``entry`` at ``key`` (``None`` removes); return what was there. Children naming ``key``
        are left alone: refusing to orphan them is the caller's decision (a drop fault does orphan)."""
        if self._undo is None:
            raise RuntimeError("Index.set outside begin/commit")
        old = self.objects.get(key)
        self._undo.append((key, old))
        self._replace(key, old, entry)
        return old

    def pending(self) -> Changes:
        """What the open unit of work has touched so far: the rows to write through before commit."""
        if self._undo is None:
            raise RuntimeError("Index.pending without begin")
        return Changes(frozenset(key for key, _ in self._undo), frozenset(self._touched))

    def commit(self) -> None:
        if self._undo is None:
            raise RuntimeError("Index.commit without begin")
        self._undo = None

    def rollback(self) -> None:
        if self._undo is None:
            return
        undo, self._undo = self._undo, None
        for key, old in reversed(undo):
            self._replace(key, self.objects.get(key), old)

    def clear(self) -> list[RootId]:
        """Forget everything (the wipe fault); return the roots that held objects."""
        if self._undo is not None:
            raise RuntimeError("Index.clear inside a unit of work")
        roots = sorted(self.roots)
        self.objects.clear()
        self.children.clear()
        self.roots.clear()
        return roots

    def _replace(self, key: Key, old: Entry | None, new: Entry | None) -> None:
        if old is not None:
            self._unlink(key, old.parents)
            self._account(old, -1)
        if new is None:
            self.objects.pop(key, None)
            return
        self.objects[key] = new
        self._link(key, new.parents)
        self._account(new, +1)

    def _account(self, entry: Entry, sign: int) -> None:
        fold = add if sign > 0 else remove
        sums = self.roots.setdefault(entry.root, RootSums())
        sums.fingerprint = fold(sums.fingerprint, entry.digest)
        sums.count += sign
        bucket = sums.buckets.setdefault(entry.bucket, BucketSum())
        bucket.sum = fold(bucket.sum, entry.digest)
        bucket.count += sign
        if bucket.count == 0:
            del sums.buckets[entry.bucket]
        if sums.count == 0:
            del self.roots[entry.root]
        self._touched.add((entry.root, entry.bucket))

    def _link(self, key: Key, parents: Iterable[Key]) -> None:
        for parent in parents:
            self.children.setdefault(parent, set()).add(key)

    def _unlink(self, key: Key, parents: Iterable[Key]) -> None:
        for parent in parents:
            kids = self.children.get(parent)
            if kids is not None:
                kids.discard(key)
                if not kids:
                    del self.children[parent]
