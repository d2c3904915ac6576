"""Reconcile one root: the level-triggered unit of work (input: a root; output: done or retry later).

Re-reads desired state for the root's dirty keys (journal rows, plus objects blocked earlier), plans,
pushes batches with ``If-Match``, and commits each batch's outcome under the lease. Only the worker loop
owns backoff and requeue; this module raises TemporaryError / LeaseLost and returns a :class:`Result`.

- A 412, or an answer ETag other than the expected one → repair this root (repair.py) and re-plan.
- A 4xx naming an operation → that object is refused (status error with the controller's message), its
  dependents are blocked, and the rest is re-planned and re-sent at once. A 4xx naming no operation
  halves the batch until it names one object. Two 409s are about another root's progress, not about the
  object, so the object waits (blocked) instead: ``missing_parent`` for a parent the store believes
  synced (that root drifted and awaits its repair), and ``has_children`` when no child named is desired
  any more (their deletes are on their way).
- A lease that was taken over before the pass starts → LeaseLost before any controller call: the acked
  ETag read from the store would be the new owner's, which the controller would not refuse.
- Every batch carries the lease's epoch: a backend that keeps a fence per root refuses (412) a writer
  older than the last one, even when its ``If-Match`` still holds.
- No batch is sent after ``valid_until`` (the worker's local deadline for a lease it could not renew in
  time): LeaseLost instead, before the lease can expire and another worker take the root.
- A parent in one of the ``suspect`` roots (another root found differing on the controller and awaiting
  its repair) is not counted on: its children wait (blocked) instead of being sent to fail with
  ``missing_parent`` (e.g. after a wiped controller, a project's ports naming an external network).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection, Engine

from converge.backends.base import Backend, Operation
from converge.core import canonical
from converge.core.clock import Clock, SystemClock
from converge.core.errors import ConvergeError, Fenced, LeaseLost, ObjectRejected, PreconditionFailed, TemporaryError
from converge.core.ids import RootId
from converge.engine import metrics as m
from converge.engine.plan import REFUSED_DELETE, Plan, make_plan, parent_keys
from converge.engine.repair import repair_root
from converge.store import leases, sync
from converge.store.leases import Lease
from converge.store.schema import ObjectState
from converge.store.sync import DesiredRow, Key, StatusRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    more: bool = False  # the journal had more rows than one pass reads: run again at once
    blocked: int = 0  # objects waiting for parents: look again later
    pushed: int = 0  # operations the controller applied
    repaired: bool = False
    fixed: int = 0  # objects repair found differing on the controller
    lease: Lease | None = None  # the lease with a new epoch, when the pass moved past an older store's fence


@dataclass
class _Pass:
    lease: Lease
    acked: int
    keys: list[Key]
    desired: dict[Key, DesiredRow]
    status: dict[Key, StatusRow] = field(default_factory=dict)
    refused: dict[Key, tuple[int, str]] = field(default_factory=dict)  # key -> (digest refused, message)
    deferred: dict[Key, str] = field(default_factory=dict)  # deletes waiting for children elsewhere
    pushed: int = 0
    repaired: bool = False
    fixed: int = 0
    moved: bool = False  # moved past a fence from before the store's history
    valid_until: float = math.inf  # local time after which the lease is not written with
    suspect: frozenset[RootId] = frozenset()  # other roots found differing: their objects may be missing
    learned: set[Key] = field(default_factory=set)  # keys this pass's repairs found differing (and journaled)


class Reconciler:
    def __init__(self, engine: Engine, backend: Backend, *, batch_size: int = 500,
                 journal_limit: int = 5000, clock: Clock | None = None,
                 metrics: m.WorkerMetrics | None = None) -> None:
        self.engine = engine
        self.metrics = metrics or m.WorkerMetrics()
        self.backend = backend
        self.clock = clock or SystemClock()
        self.batch_size = batch_size
        self.journal_limit = journal_limit

    def reconcile(self, lease: Lease, *, repair: bool = False, valid_until: float = math.inf,
                  suspect: frozenset[RootId] = frozenset()) -> Result:
        root = lease.root
        # One connection for every read of the pass (a checkout costs a ping and a rollback).
        with self.engine.connect() as conn:
            state = sync.root_state(conn, root)
            entries = sync.read_journal(conn, root, self.journal_limit)
            keys = list(dict.fromkeys([(e.kind, e.id) for e in entries] + sync.blocked_keys(conn, root)))
            if state is None or state.owner != lease.owner or state.epoch != lease.epoch:
                # Taken over: the acknowledged ETag read above is the new owner's, so the controller would
                # not fence a batch sent with it. Stop before any write.
                raise LeaseLost(f"lease on root {root} (epoch {lease.epoch}) is no longer held by {lease.owner}")
            p = _Pass(lease, state.acked, keys, {}, valid_until=valid_until, suspect=suspect)
            if keys:
                self._read_rows(conn, p)
        if repair:
            self._repair(p)  # adds the rows of the keys it found differing, and reloads every status
        if not p.keys:
            return Result(repaired=p.repaired, fixed=p.fixed)
        drained = [e.seq for e in entries]
        batch_size = self.batch_size
        while True:
            plan = make_plan(keys=p.keys, desired=p.desired, status=p.status, acked=p.acked,
                             refused={k: d for k, (d, _) in p.refused.items()}, deferred=p.deferred)
            if not plan.operations:
                self._commit(p, self._final(p, plan, drained))
                break
            chunk = plan.operations[:batch_size]
            last = len(chunk) == len(plan.operations)
            try:
                # The last batch commits the pass's whole outcome with it: one transaction, not two.
                if self._push(p, plan, chunk, self._final(p, plan, drained) if last else None) and last:
                    break
            except ObjectRejected as rej:
                if rej.index is None and len(chunk) > 1:
                    batch_size = max(1, len(chunk) // 2)
                    continue
                op = chunk[rej.index if rej.index is not None and rej.index < len(chunk) else 0]
                if rej.parent is not None and self._parent_missing(p, rej.parent):
                    log.warning("root %s: controller lacks %s %s, which %s %s names: waiting for it", root,
                                rej.parent[0], rej.parent[1], op.key[0], op.key[1])
                    continue
                if rej.children and plan.after[op.key] is None and self._children_leaving(p, op.key, rej):
                    log.info("root %s: %s %s waits for %d children being deleted elsewhere", root, op.key[0],
                             op.key[1], len(rej.children))
                    continue
                after = plan.after[op.key]
                p.refused[op.key] = (REFUSED_DELETE if after is None else after, str(rej))
                log.warning("root %s: controller refused %s %s: %s", root, op.key[0], op.key[1], rej)
            except Fenced as fenced:
                # The store says this worker holds the root (move_past proves it, or raises LeaseLost), so
                # the fence's newer epoch predates the store's history: move past it, once per pass.
                if p.moved:
                    raise TemporaryError(f"root {root}: fenced again after moving past epoch {fenced.epoch}") from None
                with self.engine.begin() as conn:
                    p.lease = leases.move_past(conn, p.lease, fenced.epoch)
                p.moved = True
                log.warning("root %s: the controller's fence names epoch %d, newer than this store's; the "
                            "holder moves to epoch %d", root, fenced.epoch, p.lease.epoch)
            except PreconditionFailed:
                if p.repaired:
                    raise TemporaryError(f"root {root}: 412 again right after repair") from None
                self._repair(p)
        unsettled = plan.blocked.keys() | p.refused.keys()
        self.metrics.applied(e.created_at for e in entries if (e.kind, e.id) not in unsettled)
        return Result(more=len(entries) >= self.journal_limit, blocked=len(plan.blocked), pushed=p.pushed,
                      repaired=p.repaired, fixed=p.fixed, lease=p.lease if p.moved else None)

    @staticmethod
    def _doubt(p: _Pass) -> None:
        """Parents held in suspect roots count as absent for this pass (not committed): their children
        wait for those roots' repairs instead of failing at the controller."""
        if not p.suspect:
            return
        for key, row in p.desired.items():
            s = p.status.get(key)
            if row.root != p.lease.root and row.root in p.suspect and s is not None and s.pushed is not None:
                p.status[key] = dataclasses.replace(s, pushed=None)

    @staticmethod
    def _parent_missing(p: _Pass, parent: Key) -> bool:
        """The controller lacks a parent the store believes it holds: one of another root that drifted
        (e.g. a wiped controller) and is not repaired yet. Its dependents then wait (blocked) instead of
        being refused for good; that root's repair (the sweep finds it) releases them. False when the
        store already knew: then the refusal stands."""
        s = p.status.get(parent)
        if s is None or s.pushed is None:
            return False
        p.status[parent] = dataclasses.replace(s, pushed=None)  # for this pass only; not committed
        return True

    def _children_leaving(self, p: _Pass, key: Key, rej: ObjectRejected) -> bool:
        """A delete refused because children still name the object: if none of them is desired any more
        (their deletes are on their way, e.g. in another root whose worker has not drained yet), the
        delete waits (blocked, retried with the root's blocked objects) instead of being refused for good.
        A child that is still desired makes the refusal stand."""
        if key in p.deferred:
            return False
        with self.engine.connect() as conn:
            if sync.read_desired(conn, [(k, i) for _, k, i in rej.children]):
                return False
        _, kind, oid = rej.children[0]
        more = f" and {len(rej.children) - 1} more" if len(rej.children) > 1 else ""
        p.deferred[key] = f"waiting for {kind} {oid}{more} to be deleted from the controller first"
        return True

    @staticmethod
    def _read_rows(conn: Connection, p: _Pass) -> None:
        """The desired rows of the pass's keys and of their parents, and the status rows of all of them."""
        p.desired = sync.read_desired(conn, p.keys)
        p.desired.update(sync.read_desired(conn, parent_keys(p.desired.values()) - set(p.desired)))
        p.status = sync.read_status(conn, set(p.keys) | set(p.desired))
        Reconciler._doubt(p)

    def _load_status(self, p: _Pass) -> None:
        with self.engine.connect() as conn:
            p.status = sync.read_status(conn, set(p.keys) | set(p.desired))
        self._doubt(p)

    def _repair(self, p: _Pass) -> None:
        result = repair_root(self.engine, self.backend, p.lease)
        p.acked = result.acked
        p.repaired = True
        p.fixed += len(result.differing)
        p.learned |= result.differing.keys()
        self.metrics.repaired(len(result.differing))
        new = [k for k in result.differing if k not in set(p.keys)]
        p.keys.extend(new)
        if new:
            with self.engine.connect() as conn:
                found = sync.read_desired(conn, new)
                found.update(sync.read_desired(conn, parent_keys(found.values()) - set(p.desired)))
            p.desired.update(found)
        self._load_status(p)

    def _push(self, p: _Pass, plan: Plan, chunk: list[Operation], final: sync.Outcome | None) -> bool:
        """Send one batch and commit what it did (with ``final`` merged in); False if it needed a repair."""
        expected = p.acked
        outcome = final or sync.Outcome(acked=0)
        for op in chunk:
            s = p.status.get(op.key)
            before, after = (s.pushed if s else None), plan.after[op.key]
            if before is not None:
                expected = canonical.remove(expected, before)
            if after is None:
                outcome.removed.add(op.key)
            else:
                expected = canonical.add(expected, after)
                outcome.synced[op.key] = after
        if self.clock.monotonic() >= p.valid_until:
            raise LeaseLost(f"lease on root {p.lease.root} (epoch {p.lease.epoch}) was not renewed within "
                            "renew_deadline: no more writes with it")
        outcome.acked = self._apply(p, chunk)
        self._commit(p, outcome)
        p.pushed += len(chunk)
        for op in chunk:
            digest = plan.after[op.key]
            if digest is None:
                p.status.pop(op.key, None)
            else:
                p.status[op.key] = StatusRow(p.lease.root, op.key[0], op.key[1], ObjectState.SYNCED, digest,
                                             None, None, 0)
        if outcome.acked == expected:
            return True
        log.warning("root %s: controller answered ETag %s, expected %s: repairing", p.lease.root,
                    canonical.hex256(outcome.acked)[:12], canonical.hex256(expected)[:12])
        if p.repaired:
            raise TemporaryError(f"root {p.lease.root}: unexpected ETag again right after repair")
        self._repair(p)
        return False

    def _apply(self, p: _Pass, chunk: list[Operation]) -> int:
        """One batch to the controller, counted by outcome."""
        try:
            etag = self.backend.apply(p.lease.root, if_match=p.acked, operations=chunk, epoch=p.lease.epoch)
        except Fenced:  # a PreconditionFailed too: first
            self.metrics.batch(m.FENCED)
            raise
        except PreconditionFailed:
            self.metrics.batch(m.PRECONDITION_FAILED)
            raise
        except ObjectRejected:
            self.metrics.batch(m.REFUSED)
            raise
        except ConvergeError:
            self.metrics.batch(m.FAILED)
            raise
        self.metrics.batch(m.APPLIED, len(chunk))
        return etag

    def _commit(self, p: _Pass, outcome: sync.Outcome) -> None:
        with self.engine.begin() as conn:
            sync.commit_outcome(conn, p.lease, outcome)
        p.acked = outcome.acked

    def _final(self, p: _Pass, plan: Plan, drained: list[int]) -> sync.Outcome:
        """What the pass establishes beyond the pushes: settled, removed, blocked, refused, drained."""
        outcome = sync.Outcome(acked=p.acked, drained=drained, planned=set(p.learned))
        for key, digest in plan.settled.items():
            s = p.status.get(key)
            if s is None or s.state is not ObjectState.SYNCED:
                outcome.synced[key] = digest
        outcome.removed = {k for k in plan.removed if k in p.status}
        for key, (pushed, reason) in plan.blocked.items():
            s = p.status.get(key)
            if s is None or s.state is not ObjectState.BLOCKED or s.message != reason:
                outcome.blocked[key] = (pushed, reason)
        for key, (digest, message) in p.refused.items():
            s = p.status.get(key)
            if s is None or s.state is not ObjectState.ERROR or s.error_digest != digest:
                outcome.errors[key] = (s.pushed if s else None, digest, message, (s.attempts if s else 0) + 1)
        return outcome
