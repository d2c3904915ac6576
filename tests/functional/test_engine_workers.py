"""Several workers on one MariaDB: roots split between worker processes, and fencing of a worker whose
lease was taken over, both at the process level (SIGSTOP / SIGCONT) and deterministically in the library.

Worker processes are ``converge sync run`` subprocesses with a short lease; they are stopped by PID in
``finally`` blocks. The controller's audit log (``X-Converge-Writer`` = the worker id) says who wrote what.
"""

import signal

import pytest
from engine_support import (
    WorkerProcess,
    assert_converged,
    audit,
    change,
    cli_env,
    client,
    eventually,
    journal_count,
    last_seq,
    new_store,
    record,
    statuses,
    store_desired,
    store_roots,
)
from sqlalchemy import select

from converge.backends.fabric import FabricClient
from converge.bench.workload import Workload
from converge.core.errors import LeaseLost
from converge.core.ids import RootId, WorkerId
from converge.engine.membership import owner
from converge.engine.reconciler import Reconciler
from converge.store import leases
from converge.store.db import db_now
from converge.store.intent import Change
from converge.store.schema import ObjectState, desired, roots, workers

pytestmark = pytest.mark.mariadb

LEASE = 3.0


def start_worker(tmp_path, name, url, fabric, *extra):
    args = ["--db", url, "--lease-duration", str(LEASE), "--poll-interval", "0.02", "--sweep-interval", "2",
            "--log-level", "INFO", *extra]
    return WorkerProcess(name, args, cli_env(fabric), tmp_path / f"{name}.log")


def worker_ids(engine):
    """pid -> worker id of the workers heartbeating into the store."""
    with engine.connect() as conn:
        return {int(r.pid): r.worker for r in conn.execute(select(workers.c.worker, workers.c.pid))}


def wait_for_ids(engine, procs):
    ids = eventually(lambda: (lambda m: m if all(p.pid in m for p in procs) else None)(worker_ids(engine)),
                     "every worker process to heartbeat")
    return [ids[p.pid] for p in procs]


def converged(engine, fabric):
    try:
        assert_converged(engine, fabric)
    except AssertionError:
        return False
    return True


def leases_follow_rendezvous(engine, live):
    """Every held lease is held by the root's rendezvous owner among ``live`` (the split has settled)."""
    rows = store_roots(engine)
    return rows and all(r.owner in (None, owner(name, live)) for name, r in rows.items())


def renames(engine, names, revision_bump=1, limit=None):
    """Update (rename) desired objects of the roots ``names``: valid changes a test can aim at roots."""
    out = []
    for (kind, oid), (root, attrs, rev) in sorted(store_desired(engine).items()):
        if root in names and (limit is None or len(out) < limit):
            attrs = dict(attrs, name=f"renamed-{rev + revision_bump}")
            out.append(Change.build(root=root, kind_=kind, id_=oid, op="update", attributes=attrs,
                                    revision=rev + revision_bump))
    return out


def apply(state, changes):
    """``state`` (kind, id) -> (root, attributes, revision) after ``changes`` (updates only)."""
    out = dict(state)
    for ch in changes:
        out[(ch.kind.value, ch.id)] = (ch.root, dict(ch.attributes), ch.revision)
    return out


def assert_no_interleaved_writers(entries):
    """Per root, the writers of applied batches form one run per writer: once another worker wrote a
    root, the previous one never wrote it again (no overlapping ownership)."""
    seen: dict[str, list[str]] = {}
    for e in entries:
        if e["status"] != 200 or e["writer"].startswith("fault:"):
            continue
        runs = seen.setdefault(e["root"], [])
        if not runs or runs[-1] != e["writer"]:
            assert e["writer"] not in runs, f"root {e['root']}: writers interleaved: {runs + [e['writer']]}"
            runs.append(e["writer"])
    return seen


def test_two_worker_processes_split_the_roots_and_converge(tmp_path, mariadb_url, fabric):
    engine = new_store(mariadb_url)
    procs = []
    try:
        procs = [start_worker(tmp_path, n, mariadb_url, fabric) for n in ("wa", "wb")]
        live = sorted(wait_for_ids(engine, procs))
        workload = Workload(10, seed=21, prefix="split")
        changes = list(workload.changes(300))
        expected = workload.desired()
        for w in live:  # worker ids are random: make sure each worker owns at least one root
            if not any(owner(r, live) == w for r, _, _ in expected.values()):
                extra = next(f"split-extra-{i}" for i in range(1000) if owner(f"split-extra-{i}", live) == w)
                changes.append(change(extra, "network", f"{extra}-net", name="extra"))
                expected[("network", f"{extra}-net")] = (extra, {"name": "extra"}, 1)
        record(engine, changes, per_transaction=20)
        eventually(lambda: converged(engine, fabric), "the first wave to converge")
        eventually(lambda: leases_follow_rendezvous(engine, live), "the roots to be split by rendezvous")
        wave = last_seq(fabric)
        names = sorted({r for r, _, _ in expected.values()})
        expected = apply(expected, renames(engine, set(names)))
        record(engine, renames(engine, set(names)), per_transaction=10)
        eventually(lambda: converged(engine, fabric), "the second wave to converge")
        second = audit(fabric, after=wave)
        writers = {e["root"]: {x["writer"] for x in second if x["root"] == e["root"]} for e in second}
        assert set(writers) == set(names)
        for root, who in writers.items():
            assert who == {owner(root, live)}, f"root {root} written by {who}, owned by {owner(root, live)}"
        assert {w for who in writers.values() for w in who} == set(live), "one worker did all the work"
        # Every root that had work is leased by its rendezvous owner, and both workers hold leases.
        held = {name: r.owner for name, r in store_roots(engine).items()}
        assert all(held[name] == owner(name, live) for name in names), held
        assert set(held.values()) == set(live)
        assert_no_interleaved_writers(audit(fabric))
        assert_converged(engine, fabric, expected)
    finally:
        for p in procs:
            p.stop()
        engine.dispose()


def test_a_paused_worker_whose_roots_were_taken_over_cannot_write(tmp_path, mariadb_url, fabric):
    engine = new_store(mariadb_url)
    procs = []
    try:
        a = start_worker(tmp_path, "wa", mariadb_url, fabric, "--batch-size", "4", "--concurrency", "1")
        procs.append(a)
        (a_id,) = wait_for_ids(engine, [a])
        workload = Workload(6, seed=22, prefix="pause")
        record(engine, workload.changes(150), per_transaction=20)
        eventually(lambda: converged(engine, fabric), "worker A alone to converge")
        names = sorted({r for r, _, _ in workload.desired().values()})
        assert {r.owner for r in store_roots(engine).values()} == {a_id}

        # A is slow now (every controller call takes 150 ms) and busy with many small batches: pause it
        # in the middle of a pass, while it holds its leases and an ETag it believes current.
        fabric.admin("PUT", "faults", {"latency_ms": 150})
        before = last_seq(fabric)
        expected = apply(workload.desired(), renames(engine, set(names)))
        record(engine, renames(engine, set(names)), per_transaction=50)
        eventually(lambda: any(e["writer"] == a_id for e in audit(fabric, after=before)), "A to start pushing")
        a.signal(signal.SIGSTOP)
        stopped_at = last_seq(fabric)

        b = start_worker(tmp_path, "wb", mariadb_url, fabric, "--batch-size", "50")
        procs.append(b)
        (b_id,) = wait_for_ids(engine, [b])
        # B sees A's heartbeat go stale, waits for A's leases to expire (database clock), takes the roots
        # over with a new epoch and finishes the work, repairing what A pushed but never committed.
        eventually(lambda: converged(engine, fabric), "B to take A's roots over and converge", deadline=90)
        takeover = {e["root"]: e["seq"] for e in reversed(audit(fabric, after=stopped_at)) if e["writer"] == b_id}
        assert takeover, "B wrote nothing"
        fabric.admin("PUT", "faults", {"latency_ms": 0})

        a.signal(signal.SIGCONT)
        # A wakes up mid-pass: whatever it sends now carries an ETag B has moved on from.
        eventually(lambda: (lambda m: m.get(a.pid) is not None)(worker_ids(engine)), "A to heartbeat again")
        with engine.connect() as conn:
            db_time = conn.execute(select(db_now())).scalar_one()
        eventually(lambda: heartbeat_after(engine, a_id, db_time), "A to run its loop again")
        for p in procs:
            assert p.stop() is not None
        procs = []
        entries = audit(fabric)
        late = [e for e in entries if e["writer"] == a_id and e["root"] in takeover and e["seq"] > takeover[e["root"]]]
        assert all(e["status"] == 412 for e in late), f"A wrote after B took its roots over: {late}"
        assert_no_interleaved_writers([e for e in entries if e["seq"] > stopped_at])
        assert_converged(engine, fabric, expected)
    finally:
        for p in procs:
            p.stop()
        engine.dispose()


def heartbeat_after(engine, worker, when):
    with engine.connect() as conn:
        beat = conn.execute(select(workers.c.heartbeat_at).where(workers.c.worker == worker)).scalar()
    return beat is not None and beat > when


# -- library level, deterministic ------------------------------------------------------------------------

A, B = WorkerId("worker-a"), WorkerId("worker-b")
ROOT = RootId("p1")


def take(engine, who, duration):
    with engine.begin() as conn:
        leases.ensure_roots(conn, [ROOT])
        return leases.acquire(conn, ROOT, who, duration)


def wait_expired(engine, lease):
    def expired():
        with engine.connect() as conn:
            row = conn.execute(select(roots.c.expires_at, db_now()).where(roots.c.root == lease.root)).one()
        return row[0] is None or row[0] < row[1]
    eventually(expired, "the lease to expire on the database's clock")


def net(oid, revision=1, name="n"):
    return change("p1", "network", oid, "create" if revision == 1 else "update", revision=revision, name=name)


def store_digest(engine, kind, oid):
    with engine.connect() as conn:
        return conn.execute(select(desired.c.digest).where(desired.c.kind == kind, desired.c.id == oid)).scalar_one()


def stored(engine):
    return (store_roots(engine)["p1"].acked, {k: (r.state, r.pushed_digest) for k, r in statuses(engine).items()})


def test_a_stale_lease_cannot_start_a_write(mariadb_url, fabric):
    engine = new_store(mariadb_url)
    backend_a, backend_b = client(fabric, writer=A), client(fabric, writer=B)
    try:
        record(engine, [net("n1")])
        stale = take(engine, A, 0.5)
        Reconciler(engine, backend_a).reconcile(stale)
        wait_expired(engine, stale)
        lease_b = take(engine, B, 30.0)
        assert lease_b.epoch == stale.epoch + 1
        record(engine, [net("n2")])
        Reconciler(engine, backend_b).reconcile(lease_b)
        b_state = stored(engine)
        seq = last_seq(fabric)

        record(engine, [net("n3"), net("n1", 2, "changed")])
        with pytest.raises(LeaseLost):
            Reconciler(engine, backend_a).reconcile(stale)
        assert not audit(fabric, after=seq), "the stale holder wrote to the controller"
        assert stored(engine) == b_state and journal_count(engine) == 2
        Reconciler(engine, backend_b).reconcile(lease_b)
        assert_converged(engine, fabric)
    finally:
        backend_a.close()
        backend_b.close()
        engine.dispose()


class InterleavingClient(FabricClient):
    """A real client whose first batch waits for ``meanwhile()`` to run: the pause of a worker between
    reading its root's state and sending its batch, made deterministic."""

    def __init__(self, *args, meanwhile, **kwargs):
        super().__init__(*args, **kwargs)
        self.meanwhile = meanwhile

    def apply(self, root, *, if_match, operations, epoch=0):
        if self.meanwhile is not None:
            hook, self.meanwhile = self.meanwhile, None
            hook()
        return super().apply(root, if_match=if_match, operations=operations, epoch=epoch)


def test_a_holder_paused_mid_pass_is_refused_by_the_controller_and_cannot_commit(mariadb_url, fabric):
    engine = new_store(mariadb_url)
    backend_b = client(fabric, writer=B)
    lease_b = None

    def takeover():
        nonlocal lease_b
        wait_expired(engine, stale)
        lease_b = take(engine, B, 30.0)
        record(engine, [net("n2")])
        Reconciler(engine, backend_b).reconcile(lease_b)

    backend_a = InterleavingClient([fabric.url], fabric.token, writer=A, meanwhile=None)
    try:
        record(engine, [net("n1")])
        stale = take(engine, A, 0.5)
        Reconciler(engine, backend_a).reconcile(stale)
        seq = last_seq(fabric)
        record(engine, [net("n1", 2, "from-a")])
        backend_a.meanwhile = takeover  # A has read the root's state and plans to push n1 rev 2
        with pytest.raises(LeaseLost):
            Reconciler(engine, backend_a).reconcile(stale)
        entries = [(e["writer"], e["status"]) for e in audit(fabric, after=seq)]
        assert entries == [(B, 200), (A, 412)], entries  # B wrote first; A's If-Match was stale
        acked_hex, states = stored(engine)
        assert f'"{acked_hex}"' == fabric.get("/v1/roots/p1")["etag"]  # B's acknowledged fingerprint
        assert states[("network", "n2")][0] == ObjectState.SYNCED.value
        # B's pass drained A's change too (the journal names keys; B pushed n1's latest desired state).
        assert states[("network", "n1")] == (ObjectState.SYNCED.value, store_digest(engine, "network", "n1"))
        assert fabric.get("/v1/roots/p1/objects/network/n1")["object"]["attributes"]["name"] == "from-a"
        assert_converged(engine, fabric)
    finally:
        backend_a.close()
        backend_b.close()
        engine.dispose()


def test_workers_started_and_stopped_by_pid_leave_no_leases_behind(tmp_path, mariadb_url, fabric):
    engine = new_store(mariadb_url)
    proc = start_worker(tmp_path, "wa", mariadb_url, fabric)
    try:
        record(engine, [net("n1")])
        eventually(lambda: converged(engine, fabric), "the worker to converge")
        assert any(r.owner for r in store_roots(engine).values())
    finally:
        code = proc.stop()
    assert code == 0, proc.log()
    assert not any(r.owner for r in store_roots(engine).values()), "a stopped worker kept its leases"
    assert not worker_ids(engine)
    engine.dispose()
