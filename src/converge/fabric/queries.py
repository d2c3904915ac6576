"""The read side of the store: objects, buckets and roots as the protocol's read endpoints serve them.

Sums and counts come from the in-memory index (always current, O(1)); documents come from SQLite, in
``kind/id`` order through the ``objects_by_root`` and ``objects_by_bucket`` indexes. Kept apart from
``state.py`` because reads never change anything and never need the undo log. Called by ``app.py``'s
read handlers and by the unit tests.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from converge.core import sums
from converge.core.canonical import group_sums
from converge.core.ids import RootId
from converge.fabric.operations import Key
from converge.fabric.state import Store


def root_summary(store: Store, root: RootId) -> tuple[int, int]:
    """``(fingerprint, objects)`` of ``root``; an unknown root is empty."""
    return store.index.fingerprint(root), store.index.count(root)


def roots_page(store: Store, *, after: RootId | None, limit: int) -> tuple[list[RootId], RootId | None]:
    """Non-empty roots in id order after ``after``, and the ``after`` of the next page (or None)."""
    # Sorting every call is fine for the thousands of roots a controller holds; a sorted container
    # would only pay off far beyond that.
    roots = sorted(r for r in store.index.roots if after is None or r > after)
    page = roots[:limit]
    return page, (page[-1] if len(roots) > limit else None)


def bucket_sums(store: Store, root: RootId) -> dict[int, int]:
    """Sum of every non-empty bucket of ``root``, by bucket number."""
    return {bucket: b.sum for bucket, b in store.index.bucket_sums(root).items() if b.count}


def bucket_objects(store: Store, root: RootId, bucket: int, *, full: bool,
                   last: int | None = None) -> list[dict[str, Any]]:
    """The objects of buckets ``bucket``..``last`` (default: one bucket) in ``kind/id`` order: ``kind``,
    ``id``, ``digest`` (and the document)."""
    rows = store.conn.execute(
        "SELECT kind, id, digest, doc FROM objects WHERE root = ? AND bucket BETWEEN ? AND ? ORDER BY kind, id",
        (root, bucket, bucket if last is None else last))
    listed: list[dict[str, Any]] = []
    for kind, oid, digest, doc in rows:
        entry: dict[str, Any] = {"kind": kind, "id": oid, "digest": digest}
        if full:
            stored = json.loads(doc)
            entry["attributes"] = stored["attributes"]
            entry["revision"] = stored["revision"]
        listed.append(entry)
    return listed


def compare_groups(store: Store, root: RootId, believed: Sequence[int], *, width: int,
                   listed: int) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """The ``/diff`` answer for ``root`` against ``believed`` (the 16 group sums a client holds, cut to
    ``width`` bytes): for each group whose own cut sum differs, its entries (``{"kind/id": digest}``) if it
    holds at most ``listed`` objects, else its 16 bucket sums cut the same way (one string of hex digits).
    """
    held = store.index.bucket_sums(root)
    totals = {b: s.sum for b, s in held.items()}
    groups = group_sums(totals)
    entries: dict[str, dict[str, str]] = {}
    buckets: dict[str, str] = {}
    for g, theirs in enumerate(believed):
        name = f"{g:x}"
        if sums.truncate(groups.get(name, 0), width) == theirs:
            continue
        first = g * sums.GROUPS
        if sum(s.count for b, s in held.items() if first <= b < first + sums.GROUPS) <= listed:
            entries[name] = listing(store, root, range(first, first + sums.GROUPS))
        else:
            buckets[name] = sums.pack(sums.bucket_row(totals, g), width)
    return entries, buckets


def listing(store: Store, root: RootId, buckets: Sequence[int]) -> dict[str, str]:
    """``{"kind/id": digest}`` of every object of ``root`` in ``buckets``, in ``kind/id`` order."""
    marks = ",".join("?" * len(buckets))
    rows = store.conn.execute(
        f"SELECT kind, id, digest FROM objects WHERE root = ? AND bucket IN ({marks}) ORDER BY kind, id",
        (root, *buckets))
    return {f"{kind}/{oid}": digest for kind, oid, digest in rows}


def objects_page(store: Store, root: RootId, *, after: Key | None,
                 limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """Full objects with ``digest`` in ``kind/id`` order after ``after``; and the next ``after``."""
    if after is None:
        rows = store.conn.execute(
            "SELECT kind, id, doc, digest FROM objects WHERE root = ? ORDER BY kind, id LIMIT ?",
            (root, limit + 1)).fetchall()
    else:
        rows = store.conn.execute(
            "SELECT kind, id, doc, digest FROM objects WHERE root = ? AND (kind, id) > (?, ?)"
            " ORDER BY kind, id LIMIT ?", (root, after[0], after[1], limit + 1)).fetchall()
    listed = [{**json.loads(doc), "digest": digest} for _, _, doc, digest in rows[:limit]]
    following = f"{rows[limit - 1][0]}/{rows[limit - 1][1]}" if len(rows) > limit else None
    return listed, following


def get_object(store: Store, root: RootId, key: Key) -> dict[str, Any] | None:
    """``{"object", "digest", "status"}`` if ``key`` exists under ``root``, else None."""
    row = store.conn.execute("SELECT root, doc, digest, status FROM objects WHERE kind = ? AND id = ?",
                             key).fetchone()
    if row is None or row[0] != root:
        return None
    return {"object": json.loads(row[1]), "digest": row[2], "status": row[3]}

