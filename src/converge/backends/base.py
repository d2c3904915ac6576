"""The backend interface the engine programs against, and the operations it sends.

Operations are values committed as one atomic batch per root, each stating its idempotency: ``Put`` is
create-or-replace, ``Delete`` is delete-if-present, so re-sending a batch after an unknown outcome (a
timeout) is always safe.

Errors (see core/errors.py): ``apply`` raises PreconditionFailed on 412, ObjectRejected naming the
operation index on a 4xx about one operation, ControllerUnavailable when no controller URL answered.

Two kinds of controller sit behind this interface: one that speaks the fabric protocol and computes
fingerprints itself (``backends.fabric``), and one that knows nothing of fingerprints, for which the
backend keeps a replica of the controller's state and computes them (``backends.ovn``, over the OVN
Northbound DB). The engine cannot tell them apart. ``converge.testing.memory`` holds an in-memory one
for unit tests of the engine.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from converge.core import canonical, sums
from converge.core.canonical import ObjectDoc
from converge.core.ids import ObjectId, RootId
from converge.core.kinds import Kind


@dataclass(frozen=True)
class Put:
    """Create or replace ``doc`` (idempotent)."""

    doc: ObjectDoc

    @property
    def key(self) -> tuple[str, str]:
        return (self.doc.kind.value, self.doc.id)


@dataclass(frozen=True)
class Delete:
    """Delete the object if present (idempotent)."""

    kind: Kind
    id: ObjectId

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind.value, self.id)


Operation = Put | Delete


@dataclass(frozen=True)
class RootSummary:
    root: RootId
    etag: int
    objects: int


@dataclass(frozen=True)
class BucketEntry:
    kind: str
    id: str
    digest: int


@dataclass(frozen=True)
class Comparison:
    """A controller's answer to the group sums a repair believes in (docs/protocol.md, ``/diff``): its
    fingerprint, and for each group whose sum differs at the compared width either every entry of the
    group (``listed``; empty if the controller holds none there) or the group's 16 bucket sums truncated to
    that width (``buckets``, buckets ``group * 16`` onwards, 0 for an empty bucket)."""

    etag: int
    listed: dict[str, list[BucketEntry]]
    buckets: dict[str, list[int]]


def compare_held(etag: int, digests: Mapping[tuple[str, str], int], believed: Mapping[str, int], *,
                 width: int, listed: int) -> Comparison:
    """Answer :meth:`Backend.compare_groups` from the digests a backend holds for one root (the OVN
    replica, the in-memory controller), as the fabric controller answers ``/diff``."""
    buckets: dict[int, int] = {}
    counts: dict[str, int] = {}
    for key, digest in digests.items():
        b = canonical.bucket_of(*key)
        buckets[b] = canonical.add(buckets.get(b, 0), digest)
        counts[f"{b >> 4:x}"] = counts.get(f"{b >> 4:x}", 0) + 1
    held = canonical.group_sums(buckets)
    answer = Comparison(etag, {}, {})
    for g in range(sums.GROUPS):
        name = f"{g:x}"
        if sums.truncate(held.get(name, 0), width) == sums.truncate(believed.get(name, 0), width):
            continue
        if counts.get(name, 0) <= listed:
            answer.listed[name] = held_entries(digests, range(g * sums.GROUPS, (g + 1) * sums.GROUPS))
        else:
            answer.buckets[name] = [sums.truncate(v, width) for v in sums.bucket_row(buckets, g)]
    return answer


def held_entries(digests: Mapping[tuple[str, str], int], buckets: Iterable[int]) -> list[BucketEntry]:
    """Answer :meth:`Backend.entries` from the digests a backend holds for one root."""
    wanted = set(buckets)
    return [BucketEntry(k, i, d) for (k, i), d in sorted(digests.items()) if canonical.bucket_of(k, i) in wanted]


_traffic_lock = threading.Lock()


@dataclass
class Traffic:
    """Bytes and requests exchanged with the controller (bodies and headers), for benchmarks and status."""

    requests: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    by_purpose: dict[str, int] = field(default_factory=dict)  # sent + received
    sent_by_purpose: dict[str, int] = field(default_factory=dict)

    def add(self, purpose: str, sent: int, received: int) -> None:
        # Called from the worker's pool threads; the counters are statistics, a lost increment is harmless
        # but keep them exact anyway: the benchmark reports them.
        with _traffic_lock:
            self._add(purpose, sent, received)

    def _add(self, purpose: str, sent: int, received: int) -> None:
        self.requests += 1
        self.bytes_sent += sent
        self.bytes_received += received
        self.by_purpose[purpose] = self.by_purpose.get(purpose, 0) + sent + received
        self.sent_by_purpose[purpose] = self.sent_by_purpose.get(purpose, 0) + sent

    @property
    def total(self) -> int:
        return self.bytes_sent + self.bytes_received


@dataclass(frozen=True)
class EndpointHealth:
    url: str
    state: str
    failures: int
    last_error: str | None


class PortStatus(enum.StrEnum):
    UP = "up"
    DOWN = "down"


class Backend(Protocol):
    traffic: Traffic

    def apply(self, root: RootId, *, if_match: int, operations: Sequence[Operation], epoch: int = 0) -> int:
        """Apply ``operations`` atomically if the root's fingerprint is ``if_match``; return the new one.

        ``epoch`` is the writer's lease epoch on the root: a backend that keeps a fence per root refuses
        (PreconditionFailed) a writer whose epoch is lower than the last one that wrote the root."""
        ...

    def root_etag(self, root: RootId) -> int: ...

    def roots(self) -> Iterator[RootSummary]:
        """Every non-empty root with its fingerprint, fetched page by page."""
        ...

    def compare_groups(self, root: RootId, believed: Mapping[str, int], *, width: int,
                       listed: int) -> Comparison:
        """The root's fingerprint, read together with what differs from ``believed`` (group sums by hex
        digit; absent: empty) when sums are compared on their first ``width`` bytes (core/sums.py): every
        differing group holding at most ``listed`` objects is listed whole, any other one answers its bucket
        sums. One round trip to localise drift in a small root."""
        ...

    def entries(self, root: RootId, buckets: Sequence[int]) -> list[BucketEntry]:
        """(kind, id, digest) of every object in ``buckets``, in ``kind/id`` order, in one read."""
        ...

    def objects(self, root: RootId) -> Iterator[ObjectDoc]:
        """Every object of a root in full (for drift reports and tests, not for the hot path)."""
        ...

    def health(self) -> list[EndpointHealth]: ...

    def port_status(self, root: RootId, port_id: ObjectId) -> PortStatus | None:
        """What the controller says of one port's dataplane (None: it does not hold the port)."""
        ...

    def follow_ports(self, *, on_up: Callable[[ObjectId], None],
                     on_connect: Callable[[], None] | None = None) -> Callable[[], None]:
        """Call ``on_up(port_id)`` (from a thread of the backend's) whenever the controller reports a port
        up, and ``on_connect()`` after every (re)connection, when events may have been missed; returns a
        function that stops following."""
        ...

    def on_drift(self, callback: Callable[[RootId], None]) -> None:
        """Register ``callback(root)``, called when the backend sees a root change that none of its own
        writes made (a backend that cannot see such changes never calls it; the sweep still finds them)."""
        ...

    def on_available(self, callback: Callable[[], None]) -> None:
        """Register ``callback()``, called when the controller answers again after it could not be reached,
        so roots waiting out a backoff retry at once rather than at the end of their (grown) delay."""
        ...

    def close(self) -> None: ...
