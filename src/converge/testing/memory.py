"""An in-memory controller behind the engine's ``Backend`` protocol, for unit tests of the engine.

Why: the reconciler's branches (412 → repair, an unexpected ETag, a refused object, a batch halved until a
refusal names an operation, the two 409s that wait instead of failing, the epoch fence) should be tests
without HTTP or sockets, and they must fail when the engine is wrong, so this keeps the protocol's
semantics rather than answering what a test scripts: fingerprints and bucket/group sums come from
``converge.core.canonical``; a batch applies atomically or not at all, after ``If-Match`` and the epoch fence
(a writer whose epoch is below the last writer's of the root gets PreconditionFailed); referential integrity
follows ``converge.core.kinds.REFERENCES`` as the fabric controller does (a put naming an absent parent →
409 with ``parent``, a delete of an object others still name → 409 with ``children``, a put of an object
of another root → 409); ports are created ``down``.

Test hooks: :meth:`MemoryBackend.fail_next` (the next calls raise ControllerUnavailable),
:meth:`~MemoryBackend.reject` (refuse puts of one object, 422, naming the operation or not),
:meth:`~MemoryBackend.lose_puts` (a lying controller: acknowledge a put without applying it),
:meth:`~MemoryBackend.drift` (change a root behind the engine's back; calls the ``on_drift`` callbacks),
:meth:`~MemoryBackend.before_next_apply` (run something just before the next batch, e.g. another writer),
:meth:`~MemoryBackend.set_port_status` and :meth:`~MemoryBackend.reconnect` (port events). Callbacks run on
the thread that caused them: the backend has no thread of its own, so tests stay deterministic. Sized for
unit tests: a batch costs O(objects held).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from converge.backends.base import (
    Backend,
    BucketEntry,
    Comparison,
    Delete,
    EndpointHealth,
    Operation,
    PortStatus,
    Put,
    RootSummary,
    Traffic,
    compare_held,
    held_entries,
)
from converge.core import canonical
from converge.core.canonical import ObjectDoc
from converge.core.errors import ControllerUnavailable, ConvergeError, Fenced, ObjectRejected, PreconditionFailed
from converge.core.ids import ObjectId, RootId
from converge.core.kinds import InvalidReference, Kind, parents

Key = tuple[str, str]  # (kind value, id), as the engine's
MAX_CHILDREN_NAMED = 10


@dataclass(frozen=True)
class Held:
    """One object the controller holds."""

    root: RootId
    doc: ObjectDoc
    digest: int
    parents: tuple[Key, ...]
    status: PortStatus | None = None


@dataclass(frozen=True)
class Batch:
    """One ``apply`` call as it arrived (refused or not), for assertions on what the engine sent."""

    root: RootId
    if_match: int
    epoch: int
    operations: tuple[Operation, ...]


@dataclass(frozen=True, eq=False)
class _Follower:
    on_up: Callable[[ObjectId], None]
    on_connect: Callable[[], None] | None


class MemoryBackend:
    def __init__(self, *, ports_up: bool = False) -> None:
        """``ports_up``: ports go ``up`` as soon as a batch creates them (else they stay ``down`` until
        :meth:`set_port_status`)."""
        self.traffic = Traffic()
        self.state: dict[Key, Held] = {}  # every object held, of every root
        self.epochs: dict[RootId, int] = {}  # the fence: the highest epoch that wrote each root
        self.batches: list[Batch] = []
        self.calls: list[str] = []  # every protocol call by name, in order
        self._down = False  # the last call failed with an injected failure
        self._available: list[Callable[[], None]] = []
        self.ports_up = ports_up
        self._lock = threading.RLock()
        self._failures = 0
        self._failure: ConvergeError | None = None
        self._rejected: dict[Key, bool] = {}  # key -> whether the refusal names the operation
        self._lose = 0
        self._before_apply: list[Callable[[], None]] = []
        self._drift_callbacks: list[Callable[[RootId], None]] = []
        self._followers: list[_Follower] = []
        self.closed = False

    # -- test hooks ----------------------------------------------------------------------------------
    def fail_next(self, n: int, error: ConvergeError | None = None) -> None:
        """The next ``n`` calls (of any protocol method) raise ``error`` (ControllerUnavailable)."""
        with self._lock:
            self._failures = n
            self._failure = error

    def reject(self, kind: Kind | str, oid: str, *, named: bool = True) -> None:
        """Refuse puts of this object with 422; ``named=False``: without saying which operation (index None)."""
        with self._lock:
            self._rejected[(str(kind), oid)] = named

    def accept(self, kind: Kind | str, oid: str) -> None:
        with self._lock:
            self._rejected.pop((str(kind), oid), None)

    def lose_puts(self, n: int) -> None:
        """Acknowledge the last put of each of the next ``n`` batches without applying it (the answer then
        carries the true ETag, which is not the one the writer expects)."""
        with self._lock:
            self._lose = n

    def before_next_apply(self, action: Callable[[], None]) -> None:
        """Run ``action`` once, at the start of the next ``apply``, before its checks (it may call ``apply``)."""
        with self._lock:
            self._before_apply.append(action)

    def drift(self, root: RootId | str, kind: Kind | str, oid: str, doc: ObjectDoc | None) -> None:
        """Put ``doc`` (None: delete) in ``root`` behind the engine's back, without any check, then call the
        ``on_drift`` callbacks."""
        key = (str(kind), oid)
        with self._lock:
            if doc is None:
                self.state.pop(key, None)
            else:
                assert (doc.kind.value, doc.id) == key, "the document is not the object named"
                old = self.state.get(key)
                self.state[key] = Held(RootId(root), doc, doc.digest(), _parents_of(doc),
                                         old.status if old else _new_status(doc, False))
            callbacks = list(self._drift_callbacks)
        for callback in callbacks:
            callback(RootId(root))

    def set_port_status(self, port_id: str, status: PortStatus) -> None:
        """Set a held port's status; ``up`` is reported to every follower."""
        key = (Kind.PORT.value, port_id)
        with self._lock:
            held = self.state.get(key)
            if held is None:
                raise KeyError(f"no port {port_id}")
            self.state[key] = replace(held, status=status)
            followers = list(self._followers)
        if status is PortStatus.UP:
            for f in followers:
                f.on_up(ObjectId(port_id))

    def reconnect(self) -> None:
        """As if the event stream broke and reconnected: every follower's ``on_connect`` runs."""
        with self._lock:
            followers = list(self._followers)
        for f in followers:
            if f.on_connect is not None:
                f.on_connect()

    def docs(self, root: RootId | str) -> dict[Key, ObjectDoc]:
        """The documents a root holds, by key (for assertions)."""
        with self._lock:
            return {k: h.doc for k, h in self.state.items() if h.root == root}

    # -- Backend -------------------------------------------------------------------------------------
    def _call(self, name: str) -> None:
        with self._lock:
            self.calls.append(name)
            self.traffic.add(name, 0, 0)
            if self._failures > 0:
                self._failures -= 1
                self._down = True
                raise self._failure or ControllerUnavailable("memory backend: injected failure")
            back, self._down = self._down, False
            callbacks = list(self._available) if back else []
        for callback in callbacks:  # the first call that goes through after injected failures
            callback()

    def apply(self, root: RootId, *, if_match: int, operations: Sequence[Operation], epoch: int = 0) -> int:
        with self._lock:
            actions, self._before_apply = self._before_apply, []
        for action in actions:
            action()
        self._call("apply")
        up: list[ObjectId] = []
        with self._lock:
            self.batches.append(Batch(root, if_match, epoch, tuple(operations)))
            current = self._fingerprint(root)
            if epoch < self.epochs.get(root, 0):
                raise Fenced(f"root {root}: epoch {epoch} is below the last writer's "
                             f"{self.epochs[root]}", current=current, epoch=self.epochs[root])
            if if_match != current:
                raise PreconditionFailed(f"root {root}: ETag moved on the controller", current=current)
            ops = list(operations)
            if self._lose > 0:
                last = next((i for i in range(len(ops) - 1, -1, -1) if isinstance(ops[i], Put)), None)
                if last is not None:
                    self._lose -= 1
                    del ops[last]
            work = dict(self.state)  # applied only if every operation passes: atomic
            for i, op in enumerate(ops):
                if isinstance(op, Put):
                    self._put(work, root, i, op, up)
                else:
                    self._delete(work, root, i, op)
            self.state = work
            self.epochs[root] = max(epoch, self.epochs.get(root, 0))
            followers = list(self._followers)
            fingerprint = self._fingerprint(root)
        for port in up:
            for f in followers:
                f.on_up(port)
        return fingerprint

    def _put(self, work: dict[Key, Held], root: RootId, i: int, op: Put, up: list[ObjectId]) -> None:
        key, doc = op.key, op.doc
        where = f"{key[0]} {key[1]}"
        if key in self._rejected:
            raise ObjectRejected(f"invalid_object: {where} is refused by the test",
                                 index=i if self._rejected[key] else None, status=422)
        try:
            named = _parents_of(doc)
        except InvalidReference as err:
            raise ObjectRejected(f"invalid_object: {where}: {err}", index=i, status=422) from None
        old = work.get(key)
        if old is not None and old.root != root:
            raise ObjectRejected(f"root_conflict: {where} exists under root {old.root}", index=i, status=409)
        for parent in named:
            if parent not in work:
                raise ObjectRejected(f"missing_parent: {where} names {parent[0]} {parent[1]}, which does not "
                                     "exist", index=i, status=409, parent=parent)
        status = old.status if old is not None else _new_status(doc, self.ports_up)
        if old is None and status is PortStatus.UP:
            up.append(doc.id)
        work[key] = Held(root, doc, doc.digest(), named, status)

    @staticmethod
    def _delete(work: dict[Key, Held], root: RootId, i: int, op: Delete) -> None:
        key = op.key
        old = work.get(key)
        if old is None or old.root != root:
            return  # delete-if-present, scoped to the batch's root
        kids = sorted((h.root, k[0], k[1]) for k, h in work.items() if key in h.parents)
        if kids:
            raise ObjectRejected(f"has_children: {key[0]} {key[1]} is still named by {len(kids)} object(s)",
                                 index=i, status=409, children=tuple(kids[:MAX_CHILDREN_NAMED]))
        del work[key]

    def _in_root(self, root: RootId) -> dict[Key, Held]:
        return {k: h for k, h in self.state.items() if h.root == root}

    def _fingerprint(self, root: RootId) -> int:
        return canonical.combine(h.digest for h in self._in_root(root).values())

    def root_etag(self, root: RootId) -> int:
        self._call("root_etag")
        with self._lock:
            return self._fingerprint(root)

    def roots(self) -> Iterator[RootSummary]:
        self._call("roots")
        with self._lock:
            names = sorted({h.root for h in self.state.values()})
            summaries = [RootSummary(r, self._fingerprint(r), len(self._in_root(r))) for r in names]
        yield from summaries

    def compare_groups(self, root: RootId, believed: Mapping[str, int], *, width: int,
                       listed: int) -> Comparison:
        self._call("compare_groups")
        with self._lock:
            digests = {k: h.digest for k, h in self._in_root(root).items()}
        return compare_held(canonical.combine(digests.values()), digests, believed, width=width, listed=listed)

    def entries(self, root: RootId, buckets: Sequence[int]) -> list[BucketEntry]:
        self._call("entries")
        with self._lock:
            digests = {k: h.digest for k, h in self._in_root(root).items()}
        return held_entries(digests, buckets)

    def objects(self, root: RootId) -> Iterator[ObjectDoc]:
        self._call("objects")
        with self._lock:
            docs = [h.doc for _, h in sorted(self._in_root(root).items())]
        yield from docs

    def health(self) -> list[EndpointHealth]:
        with self._lock:
            failing = self._failures > 0
        return [EndpointHealth("memory://", "failing" if failing else "up", 0, None)]

    def port_status(self, root: RootId, port_id: ObjectId) -> PortStatus | None:
        self._call("port_status")
        with self._lock:
            held = self.state.get((Kind.PORT.value, port_id))
            return held.status if held is not None and held.root == root else None

    def follow_ports(self, *, on_up: Callable[[ObjectId], None],
                     on_connect: Callable[[], None] | None = None) -> Callable[[], None]:
        follower = _Follower(on_up, on_connect)
        with self._lock:
            self._followers.append(follower)
        if on_connect is not None:
            on_connect()  # connected at once

        def stop() -> None:
            with self._lock:
                if follower in self._followers:
                    self._followers.remove(follower)

        return stop

    def on_available(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._available.append(callback)

    def on_drift(self, callback: Callable[[RootId], None]) -> None:
        with self._lock:
            self._drift_callbacks.append(callback)

    def close(self) -> None:
        with self._lock:
            self._followers.clear()
            self.closed = True


def _parents_of(doc: ObjectDoc) -> tuple[Key, ...]:
    return tuple(dict.fromkeys((k.value, str(i)) for k, i in parents(doc.kind, doc.attributes)))


def _new_status(doc: ObjectDoc, up: bool) -> PortStatus | None:
    if doc.kind is not Kind.PORT:
        return None
    return PortStatus.UP if up else PortStatus.DOWN


if TYPE_CHECKING:
    def _implements_the_protocol(backend: MemoryBackend) -> Backend:  # mypy checks it, nothing runs it
        return backend
