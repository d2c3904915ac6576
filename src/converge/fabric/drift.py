"""Injected drift: the controller loses or garbles state behind the sync engine's back.

Why: the engine's repair (fingerprint compare, bucket descent, re-push) is only proven if the controller
can really diverge. These are the store-side halves of ``POST /v1/admin/wipe|drop|corrupt``; they bypass
validation and referential integrity (a dropped parent leaves its children naming it, as a real lossy
controller would) but never the sums: ETags and bucket sums stay true to the new state, so the drift is
visible, not hidden. Each change is logged in the audit log under a ``fault:*`` writer. Called by
``faults.py`` and the unit tests.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

from converge.core.canonical import canonical_json, digest_bytes, etag
from converge.core.ids import RootId
from converge.fabric import audit, fence
from converge.fabric.index import Entry
from converge.fabric.operations import Key
from converge.fabric.state import Store

Touched = list[tuple[RootId, Key]]


def wipe(store: Store) -> int:
    """Forget every object, reference and sum, and every root's epoch fence (a controller that lost its
    configuration lost those too, as a wiped OVN NB loses its marker rows); return how many objects were
    forgotten. Only roots that held objects are logged: a root that lost nothing but its fence is not."""
    counts = {root: sums.count for root, sums in store.index.roots.items()}
    forgotten = len(store.index.objects)
    with store.transaction():
        for table in ("objects", "refs", "roots", "buckets"):
            store.conn.execute(f"DELETE FROM {table}")
        fence.forget_all(store.conn)
        now = store.clock()
        for root, count in sorted(counts.items()):
            audit.record(store.conn, audit.Attempt(root, "fault:wipe", None, 200, count, etag(0)),
                         now=now, keep=store.audit_keep)
    store.index.clear()
    return forgotten


def _choose(store: Store, count: int, root: RootId | None, rng: random.Random) -> Touched:
    candidates = sorted((entry.root, key) for key, entry in store.index.objects.items()
                        if root is None or entry.root == root)
    return sorted(rng.sample(candidates, min(count, len(candidates))))


def _attempts(store: Store, touched: Touched, writer: str) -> list[audit.Attempt]:
    per_root: dict[RootId, int] = {}
    for root, _ in touched:
        per_root[root] = per_root.get(root, 0) + 1
    return [audit.Attempt(root, writer, None, 200, n, etag(store.index.fingerprint(root)))
            for root, n in sorted(per_root.items())]


def drop(store: Store, count: int, *, root: RootId | None = None,
         rng: random.Random | None = None) -> Touched:
    """Remove ``count`` random objects (of ``root`` if given), regardless of references."""
    chosen = _choose(store, count, root, rng or random.SystemRandom())

    def work(docs: dict[Key, bytes]) -> list[audit.Attempt]:
        for _, key in chosen:
            store.index.set(key, None)
        return _attempts(store, chosen, "fault:drop")

    store.run(work)
    return chosen


def corrupt(store: Store, count: int, *, root: RootId | None = None,
            rng: random.Random | None = None) -> Touched:
    """Change the ``name`` attribute of ``count`` random objects; their digests change with it."""
    rand = rng or random.SystemRandom()
    chosen = _choose(store, count, root, rand)

    def work(docs: dict[Key, bytes]) -> list[audit.Attempt]:
        for _, key in chosen:
            entry = store.index.objects[key]
            row = store.conn.execute("SELECT doc FROM objects WHERE kind = ? AND id = ?", key).fetchone()
            doc = json.loads(row[0])
            # ``name`` is never a reference, so the garbled object still names existing parents and
            # the only visible difference is the digest.
            canonical, digest = _garble(doc, entry.digest, rand)
            store.index.set(key, Entry(entry.root, digest, entry.bucket, entry.parents, entry.status))
            docs[key] = canonical
        return _attempts(store, chosen, "fault:corrupt")

    store.run(work)
    return chosen


def _garble(doc: dict[str, object], old_digest: int, rand: random.Random) -> tuple[bytes, int]:
    attributes = doc["attributes"]
    assert isinstance(attributes, dict)
    while True:
        attributes["name"] = f"corrupted-{rand.getrandbits(32):08x}"
        canonical = canonical_json(doc)
        digest = digest_bytes(canonical)
        if digest != old_digest:
            return canonical, digest


def describe(touched: Sequence[tuple[RootId, Key]]) -> list[dict[str, str]]:
    """The admin API's answer shape: ``[{"root", "kind", "id"}]``."""
    return [{"root": root, "kind": key[0].value, "id": key[1]} for root, key in touched]
