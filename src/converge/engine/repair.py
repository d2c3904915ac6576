"""Local repair of one root: find what the controller really holds, by fingerprint, moving bytes in
proportion to the drift rather than to the root.

1. compare the 16 group sums (one call, which also carries the root's ETag) with the sums of the digests
   the store believes were pushed;
2. for each differing group: if it holds few objects, list its (kind, id, digest) entries at once (one
   call); else compare its bucket sums (one call) and list each differing bucket (one call per bucket);
4. record, under the lease, what the controller holds for every key that differs (``learned``) and the
   controller's ETag as the acknowledged fingerprint.

The reconciler then plans those keys like any other: desired puts, and deletes of what desired lacks.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from converge.backends.base import Backend
from converge.core import canonical
from converge.core.errors import TemporaryError
from converge.core.ids import RootId
from converge.store import sync
from converge.store.leases import Lease
from converge.store.sync import Key

log = logging.getLogger(__name__)

# A differing group with at most this many objects is listed whole instead of narrowed by bucket sums:
# 16 digests weigh about what 16 bucket sums do, and it saves a round trip.
SPARSE_GROUP = 16


@dataclass(frozen=True)
class RepairResult:
    acked: int
    differing: dict[Key, int | None]  # key -> digest the controller holds (None: absent)


def _group(bucket: int) -> str:
    return f"{bucket >> 4:x}"


def find_differences(backend: Backend, root: RootId, local_digests: Mapping[Key, int],
                     ) -> tuple[int, dict[Key, int | None]]:
    """Compare the controller with ``local_digests``; return the controller's ETag and the keys that differ
    with the digest the controller holds for each (None: absent). Used by repair and by ``converge drift``."""
    local_bucket: dict[int, int] = defaultdict(int)
    by_group: dict[str, dict[Key, int]] = defaultdict(dict)
    for key, digest in local_digests.items():
        b = canonical.bucket_of(*key)
        local_bucket[b] = canonical.add(local_bucket[b], digest)
        by_group[_group(b)][key] = digest
    local_groups = canonical.group_sums(local_bucket)
    etag, remote_groups = backend.group_sums(root)
    differing: dict[Key, int | None] = {}

    def compare(local: Mapping[Key, int], remote: Mapping[Key, int]) -> None:
        for key in local.keys() | remote.keys():
            if local.get(key) != remote.get(key):
                differing[key] = remote.get(key)

    for g in sorted(set(local_groups) | set(remote_groups)):
        if local_groups.get(g, 0) == remote_groups.get(g, 0):
            continue
        local = by_group.get(g, {})
        if g not in remote_groups:
            compare(local, {})
        elif len(local) <= SPARSE_GROUP:
            # Few objects: their digests cost less than 16 bucket sums and a second round trip.
            compare(local, {(e.kind, e.id): e.digest for e in backend.group_entries(root, g)})
        else:
            remote_buckets = backend.bucket_sums(root, g)
            for b in {b for b in local_bucket if _group(b) == g} | set(remote_buckets):
                if local_bucket.get(b, 0) == remote_buckets.get(b, 0):
                    continue
                in_bucket = {k: d for k, d in local.items() if canonical.bucket_of(*k) == b}
                remote = ({(e.kind, e.id): e.digest for e in backend.bucket_entries(root, b)}
                          if b in remote_buckets else {})
                compare(in_bucket, remote)
    return etag, differing


def repair_root(engine: Engine, backend: Backend, lease: Lease, *, attempts: int = 3) -> RepairResult:
    """Re-learn what the controller holds for ``lease.root`` and store it under the lease."""
    for _ in range(attempts):
        with engine.connect() as conn:
            pushed = sync.pushed_in_root(conn, lease.root)
        etag, differing = find_differences(backend, lease.root, pushed)
        believed = dict(pushed)
        for key, digest in differing.items():
            if digest is None:
                believed.pop(key, None)
            else:
                believed[key] = digest
        if canonical.combine(believed.values()) != etag:
            # The controller changed while we looked (a stale writer, or drift in progress): look again.
            log.warning("root %s changed during repair; retrying", lease.root)
            continue
        with engine.begin() as conn:
            sync.commit_outcome(conn, lease, sync.Outcome(acked=etag, learned=differing, repaired=True))
        if differing:
            log.info("root %s: repair found %d objects differing on the controller", lease.root, len(differing))
        return RepairResult(etag, differing)
    raise TemporaryError(f"root {lease.root} kept changing on the controller during repair")
