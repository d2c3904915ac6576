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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

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

    def group_sums(self, root: RootId) -> tuple[int, dict[str, int]]:
        """The root's fingerprint and its non-empty group sums, read together."""
        ...

    def group_entries(self, root: RootId, group: str) -> list[BucketEntry]:
        """(kind, id, digest) of every object of one group: cheaper than bucket sums for a sparse group."""
        ...

    def bucket_sums(self, root: RootId, group: str) -> dict[int, int]: ...

    def bucket_entries(self, root: RootId, bucket: int) -> list[BucketEntry]: ...

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
