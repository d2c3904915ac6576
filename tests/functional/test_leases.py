"""Leases on a real database (SQLite and MariaDB): the guarded-UPDATE state machine and fencing."""

import time

import pytest
from sqlalchemy import update

from converge.core.errors import LeaseLost
from converge.core.ids import RootId, WorkerId
from converge.store import leases
from converge.store.schema import roots

R = RootId("project-a")
A, B = WorkerId("worker-a"), WorkerId("worker-b")


def take(store, owner, duration=30.0):
    with store.begin() as conn:
        leases.ensure_roots(conn, [R])
        return leases.acquire(conn, R, owner, duration)


def test_one_holder_at_a_time_and_release_frees(store):
    a = take(store, A)
    assert a is not None and a.epoch == 1
    assert take(store, B) is None
    with store.begin() as conn:
        leases.release(conn, a)
    b = take(store, B)
    assert b is not None and b.epoch == 2


def test_expired_lease_is_taken_over_with_a_new_epoch_and_the_old_holder_is_fenced(store):
    a = take(store, A, duration=0.2)
    time.sleep(0.3)  # expiry is on the database's clock
    b = take(store, B)
    assert b is not None and b.epoch == a.epoch + 1
    with pytest.raises(LeaseLost), store.begin() as conn:
        leases.guard(conn, a, acked="f" * 64)
    with store.begin() as conn:
        leases.guard(conn, b, acked="e" * 64)
    with store.connect() as conn:
        assert conn.execute(roots.select()).first().acked == "e" * 64


def test_an_expired_but_untaken_lease_cannot_write_either(store):
    a = take(store, A, duration=0.2)
    time.sleep(0.3)
    with pytest.raises(LeaseLost), store.begin() as conn:
        leases.guard(conn, a)


def test_renew_all_reports_what_is_still_held(store):
    a = take(store, A)
    with store.begin() as conn:
        assert leases.renew_all(conn, A, 30.0) == {R: a.epoch}
        conn.execute(update(roots).values(owner=B))  # someone else took it (e.g. after a pause)
    with store.begin() as conn:
        assert leases.renew_all(conn, A, 30.0) == {}


def test_heartbeats_and_retire(store):
    with store.begin() as conn:
        leases.heartbeat(conn, A)
        leases.heartbeat(conn, B)
        leases.heartbeat(conn, A)
        assert leases.live_workers(conn, within=10) == [A, B]
    take(store, A)
    with store.begin() as conn:
        leases.retire(conn, A)
        assert leases.live_workers(conn, within=10) == [B]
    assert take(store, B) is not None
