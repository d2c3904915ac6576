"""Per-root leases and worker heartbeats: the seed's optimistic lock, done per root and fenced.

A lease is the row ``converge_roots(root)`` with ``owner``, ``epoch`` and ``expires_at`` (the database's
clock). Every change to it is one guarded ``UPDATE … WHERE``; nothing is ever locked across a network
call. Durations (see :class:`LeaseTiming`): a lease lasts ``duration`` seconds from its last renewal; its
holder renews every ``renew_every`` seconds and stops writing if a renewal has not succeeded within
``renew_deadline`` (engine/worker.py); a free root is retried every ``retry_period``.

What it guarantees: at most one worker can *write* for a root at a time, because every write of the holder
(see :func:`guard`) is conditional on owner, epoch and ``expires_at > now`` in the same transaction, and
the controller refuses a stale writer's batch (If-Match, and the epoch fence). What it does not: that a
worker notices at once that it lost a lease (a paused process learns it when it wakes).

Nobody waits on another holder's rows (docs/design/scale-out.md): :func:`acquire_many` skips rows another
transaction has locked (``FOR UPDATE SKIP LOCKED``) instead of waiting for them — a holder paused inside
a transaction would otherwise hold every worker that wants its roots — and :func:`ensure_roots` inserts
only the rows it did not find.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from converge.core.errors import LeaseLost
from converge.core.ids import RootId, WorkerId
from converge.store.db import db_now, insert_missing
from converge.store.schema import ZERO_HEX, roots, workers

_CHUNK = 500


@dataclass(frozen=True)
class LeaseTiming:
    duration: float = 15.0
    renew_every: float = 5.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


@dataclass(frozen=True)
class Lease:
    root: RootId
    owner: WorkerId
    epoch: int


def ensure_roots(conn: Connection, names: list[RootId]) -> None:
    """Make the rows of roots never seen. Reads first (a plain read waits on no lock): an ``INSERT
    IGNORE`` of an existing row would wait for a lock another transaction holds on it."""
    known: set[str] = set()
    for i in range(0, len(names), _CHUNK):
        chunk = list(names[i:i + _CHUNK])
        known.update(r.root for r in conn.execute(select(roots.c.root).where(roots.c.root.in_(chunk))))
    insert_missing(conn, roots, [{"root": r, "acked": ZERO_HEX, "epoch": 0, "next_attempt_at": 0.0,
                                  "failures": 0} for r in dict.fromkeys(names) if r not in known])


def _free(owner: WorkerId) -> ColumnElement[bool]:
    return or_(roots.c.owner.is_(None), roots.c.expires_at < db_now(), roots.c.owner == owner)


def acquire_many(conn: Connection, names: list[RootId], owner: WorkerId, duration: float) -> dict[RootId, Lease]:
    """Take every root of ``names`` that is free, expired or already ours, skipping rows another
    transaction holds locked; each taken root's epoch is bumped so its old holders are fenced."""
    taken: dict[RootId, Lease] = {}
    for i in range(0, len(names), _CHUNK):
        chunk = sorted(set(names[i:i + _CHUNK]))  # one lock order for every worker
        free = select(roots.c.root).where(roots.c.root.in_(chunk), _free(owner))
        if conn.dialect.name != "sqlite":  # SQLite has one writer at a time and no row locks
            free = free.with_for_update(skip_locked=True)
        mine = [r.root for r in conn.execute(free)]
        if not mine:
            continue
        conn.execute(update(roots).where(roots.c.root.in_(mine), _free(owner))
                     .values(owner=owner, epoch=roots.c.epoch + 1, expires_at=db_now() + duration))
        for r in conn.execute(select(roots.c.root, roots.c.epoch)
                              .where(roots.c.root.in_(mine), roots.c.owner == owner)):
            taken[RootId(r.root)] = Lease(RootId(r.root), owner, int(r.epoch))
    return taken


def acquire(conn: Connection, root: RootId, owner: WorkerId, duration: float) -> Lease | None:
    """Take one root (see :func:`acquire_many`); None if it is held by another worker or locked."""
    return acquire_many(conn, [root], owner, duration).get(root)


@dataclass(frozen=True)
class Holding:
    root: RootId
    owner: WorkerId | None
    expires_in: float | None  # seconds from now on the database's clock; negative: expired


def free_roots(conn: Connection) -> list[RootId]:
    """Roots no worker holds (released by a worker that handed them over or stopped); uses the owner index."""
    return [RootId(r.root) for r in conn.execute(select(roots.c.root).where(roots.c.owner.is_(None)))]


def overview(conn: Connection) -> list[Holding]:
    """Every root with its holder and when its lease ends: what maintenance plans takeovers with."""
    rows = conn.execute(select(roots.c.root, roots.c.owner, roots.c.expires_at - db_now()))
    return [Holding(RootId(r[0]), None if r[1] is None else WorkerId(r[1]),
                    None if r[2] is None else float(r[2])) for r in rows]


def renew_all(conn: Connection, owner: WorkerId, duration: float) -> dict[RootId, int]:
    """Extend every unexpired lease of ``owner``; return the roots (with epochs) it still holds."""
    conn.execute(update(roots).where(roots.c.owner == owner, roots.c.expires_at > db_now())
                 .values(expires_at=db_now() + duration))
    rows = conn.execute(select(roots.c.root, roots.c.epoch)
                        .where(roots.c.owner == owner, roots.c.expires_at > db_now()))
    return {RootId(r.root): int(r.epoch) for r in rows}


def move_past(conn: Connection, lease: Lease, epoch: int) -> Lease:
    """The holder proves its lease and moves its epoch past ``epoch`` (a fence older than the store's
    history, see core.errors.Fenced); LeaseLost if it no longer holds the root. Epochs stay monotonic:
    every other holder of this root, past or future, is below or above the new one as before."""
    if epoch < lease.epoch:
        return lease
    guard(conn, lease, epoch=epoch + 1)
    return Lease(lease.root, lease.owner, epoch + 1)


def release(conn: Connection, lease: Lease) -> None:
    conn.execute(update(roots).where(roots.c.root == lease.root, roots.c.owner == lease.owner,
                                     roots.c.epoch == lease.epoch)
                 .values(owner=None, expires_at=None))


def guard(conn: Connection, lease: Lease, **values: object) -> None:
    """Within the caller's transaction, prove ``lease`` is still held (and set ``values`` on the root).

    Raises :class:`LeaseLost` if it is not; the caller's transaction must then roll back.
    """
    stmt = update(roots).where(roots.c.root == lease.root, roots.c.owner == lease.owner,
                               roots.c.epoch == lease.epoch, roots.c.expires_at > db_now())
    res = conn.execute(stmt.values(**values) if values else stmt.values(epoch=roots.c.epoch))
    if res.rowcount != 1:
        raise LeaseLost(f"lease on root {lease.root} (epoch {lease.epoch}) is no longer held by {lease.owner}")


def new_worker_id() -> WorkerId:
    return WorkerId(f"{socket.gethostname()[:40]}:{os.getpid()}:{os.urandom(4).hex()}")


def heartbeat(conn: Connection, worker: WorkerId, started_at: float | None = None) -> None:
    res = conn.execute(update(workers).where(workers.c.worker == worker).values(heartbeat_at=db_now()))
    if res.rowcount == 0:
        insert_missing(conn, workers, [{"worker": worker, "host": socket.gethostname()[:255],
                                        "pid": os.getpid(), "started_at": started_at or 0.0,
                                        "heartbeat_at": 0.0}])
        conn.execute(update(workers).where(workers.c.worker == worker).values(heartbeat_at=db_now()))


def live_workers(conn: Connection, within: float) -> list[WorkerId]:
    rows = conn.execute(select(workers.c.worker).where(workers.c.heartbeat_at > db_now() - within))
    return sorted(WorkerId(r.worker) for r in rows)


def retire(conn: Connection, worker: WorkerId) -> None:
    """A stopping worker gives its roots back at once instead of letting them expire."""
    conn.execute(update(roots).where(roots.c.owner == worker).values(owner=None, expires_at=None))
    conn.execute(delete(workers).where(workers.c.worker == worker))


def forget_dead_workers(conn: Connection, older_than: float) -> None:
    conn.execute(delete(workers).where(and_(workers.c.heartbeat_at < db_now() - older_than)))
