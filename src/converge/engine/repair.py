"""Local repair of one root: find what the controller really holds, by fingerprint, moving bytes in
proportion to the drift rather than to the root.

1. send the 16 group sums the store believes in (sums of the digests it pushed), cut to their first
   ``SHORT`` bytes (core/sums.py); the controller answers its ETag and, for each group that differs, the
   group's (kind, id, digest) entries if it holds at most ``LIST_AT_MOST`` objects there, else the group's
   16 bucket sums, cut the same way (one call: a small root's drift is localised here);
2. list the entries of every bucket whose sum differs, all in one call;
3. check that what was found explains the whole 256-bit ETag: believed digests with the differences
   applied must sum to it. Cut sums can collide (equal while the sums differ) and hide a difference; then
   the check fails and the root is compared again at full width, so a collision costs a round, never a
   wrong repair. A check that still fails means the controller changed meanwhile: the repair looks again;
4. record, under the lease, what the controller holds for every key that differs (``learned``) and the
   controller's ETag as the acknowledged fingerprint.

The reconciler then plans those keys like any other: desired puts, and deletes of what desired lacks.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from converge.backends.base import Backend, BucketEntry
from converge.core import canonical, sums
from converge.core.errors import TemporaryError
from converge.core.ids import RootId
from converge.store import sync
from converge.store.leases import Lease
from converge.store.sync import Key

log = logging.getLogger(__name__)

# Bytes of each sum compared in the first pass: 2^-16 odds per differing group or bucket that a difference
# hides there until the full-width pass (BENCHMARKS.md, "Repair bytes": 4 hex digits a sum instead of 64).
SHORT = 2
# A differing group holding at most this many objects is listed whole rather than answered as 16 bucket
# sums: listing costs ~110 bytes an object, narrowing by bucket costs 16 sums plus a second call (~450
# bytes of HTTP) shared by every group narrowed.
LIST_AT_MOST = 6


@dataclass(frozen=True)
class RepairResult:
    acked: int
    differing: dict[Key, int | None]  # key -> digest the controller holds (None: absent)


def find_differences(backend: Backend, root: RootId, local_digests: Mapping[Key, int], *, width: int = SHORT,
                     ) -> tuple[int, dict[Key, int | None]]:
    """Compare the controller with ``local_digests``; return the controller's ETag and the keys that differ
    with the digest the controller holds for each (None: absent). Sums are compared on their first
    ``width`` bytes, then at full width if what was found does not explain the ETag. Used by repair and by
    ``converge drift``."""
    etag, differing = localise(backend, root, local_digests, width=width)
    if width < sums.FULL and not explains(local_digests, differing, etag):
        etag, differing = localise(backend, root, local_digests, width=sums.FULL)
    return etag, differing


def explains(local_digests: Mapping[Key, int], differing: Mapping[Key, int | None], etag: int) -> bool:
    """Whether ``local_digests`` with ``differing`` applied sum to ``etag``."""
    believed = dict(local_digests)
    for key, digest in differing.items():
        if digest is None:
            believed.pop(key, None)
        else:
            believed[key] = digest
    return canonical.combine(believed.values()) == etag


def localise(backend: Backend, root: RootId, local_digests: Mapping[Key, int], *, width: int,
             ) -> tuple[int, dict[Key, int | None]]:
    """One pass of :func:`find_differences` at ``width`` bytes, unchecked."""
    local_bucket: dict[int, int] = defaultdict(int)
    by_bucket: dict[int, dict[Key, int]] = defaultdict(dict)
    for key, digest in local_digests.items():
        b = canonical.bucket_of(*key)
        local_bucket[b] = canonical.add(local_bucket[b], digest)
        by_bucket[b][key] = digest
    answer = backend.compare_groups(root, canonical.group_sums(local_bucket), width=width,
                                    listed=LIST_AT_MOST)
    differing: dict[Key, int | None] = {}

    def compare(buckets: Iterable[int], remote: list[BucketEntry]) -> None:
        local = {key: d for b in buckets for key, d in by_bucket.get(b, {}).items()}
        held = {(e.kind, e.id): e.digest for e in remote}
        for key in local.keys() | held.keys():
            if local.get(key) != held.get(key):
                differing[key] = held.get(key)

    for group, entries in answer.listed.items():
        compare(_buckets_of(group), entries)
    narrowed = [b for group, row in answer.buckets.items() for b, held_sum in zip(_buckets_of(group), row, strict=True)
                if sums.truncate(local_bucket.get(b, 0), width) != held_sum]
    if narrowed:
        compare(narrowed, backend.entries(root, narrowed))
    return answer.etag, differing


def _buckets_of(group: str) -> range:
    first = int(group, 16) * sums.GROUPS
    return range(first, first + sums.GROUPS)


def repair_root(engine: Engine, backend: Backend, lease: Lease, *, attempts: int = 3) -> RepairResult:
    """Re-learn what the controller holds for ``lease.root`` and store it under the lease."""
    for _ in range(attempts):
        with engine.connect() as conn:
            pushed = sync.pushed_in_root(conn, lease.root)
        etag, differing = find_differences(backend, lease.root, pushed)
        if not explains(pushed, differing, etag):
            # The controller changed while we looked (a stale writer, or drift in progress): look again.
            log.warning("root %s changed during repair; retrying", lease.root)
            continue
        with engine.begin() as conn:
            sync.commit_outcome(conn, lease, sync.Outcome(acked=etag, learned=differing, repaired=True))
        if differing:
            log.info("root %s: repair found %d objects differing on the controller", lease.root, len(differing))
        return RepairResult(etag, differing)
    raise TemporaryError(f"root {lease.root} kept changing on the controller during repair")
