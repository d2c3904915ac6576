"""The sync engine against the real controller process and a real store: convergence of random
workloads (property-based), coalescing as the controller sees it, and wake-up of a running worker."""

import itertools
import threading
from pathlib import Path

import pytest
from engine_support import (
    assert_converged,
    audit,
    change,
    client,
    eventually,
    last_seq,
    make_worker,
    new_store,
    record,
    settle,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converge.bench.workload import Workload
from converge.testing.fabric import FabricProcess

_examples = itertools.count()


@pytest.fixture(scope="module")
def shared_fabric(tmp_path_factory):
    """One controller for every hypothesis example of the module; each example wipes it first."""
    process = FabricProcess(tmp_path_factory.mktemp("fabric"), port_up_delay=0.2)
    process.start()
    yield process
    process.stop()


rounds = st.lists(
    st.tuples(st.integers(min_value=1, max_value=120),  # changes recorded in this round
              st.sampled_from(["idle", "steps", "none"]),  # then: drain fully, drain partly, or not at all
              st.integers(min_value=1, max_value=50)),  # changes per transaction
    min_size=1, max_size=4)


def run_workload(engine, fabric, *, seed, roots, plan, batch_size, journal_limit, concurrency):
    fabric.admin("POST", "wipe")
    workload = Workload(roots, seed=seed, prefix=f"h{next(_examples)}")
    backend = client(fabric)
    worker = make_worker(engine, backend, batch_size=batch_size, journal_limit=journal_limit,
                         concurrency=concurrency)
    try:
        for n, drain, per_tx in plan:
            record(engine, workload.changes(n), per_transaction=per_tx)
            if drain == "idle":
                settle(worker)
            elif drain == "steps":
                for _ in range(2):
                    worker.step()
        settle(worker)
        assert_converged(engine, fabric, workload.desired())
    finally:
        worker.shutdown()
        backend.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32), roots=st.integers(min_value=1, max_value=6), plan=rounds,
       batch_size=st.sampled_from([2, 7, 500]), journal_limit=st.sampled_from([5, 40, 5000]),
       concurrency=st.sampled_from([1, 3]))
def test_random_workloads_converge_exactly_on_sqlite(shared_fabric, tmp_path_factory, seed, roots, plan,
                                                       batch_size, journal_limit, concurrency):
    path = tmp_path_factory.mktemp("store") / "store.sqlite"
    engine = new_store(f"sqlite:///{path}")
    try:
        run_workload(engine, shared_fabric, seed=seed, roots=roots, plan=plan, batch_size=batch_size,
                     journal_limit=journal_limit, concurrency=concurrency)
    finally:
        engine.dispose()


@pytest.mark.mariadb
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32), roots=st.integers(min_value=1, max_value=4),
       plan=st.lists(st.tuples(st.integers(min_value=1, max_value=80), st.sampled_from(["idle", "steps", "none"]),
                               st.integers(min_value=1, max_value=40)), min_size=1, max_size=3),
       batch_size=st.sampled_from([5, 500]))
def test_random_workloads_converge_exactly_on_mariadb(shared_fabric, mariadb, seed, roots, plan, batch_size):
    engine = new_store(mariadb.create_database(f"converge_h{next(_examples)}"))
    try:
        run_workload(engine, shared_fabric, seed=seed, roots=roots, plan=plan, batch_size=batch_size,
                     journal_limit=30, concurrency=2)
    finally:
        engine.dispose()


@pytest.fixture
def engine(tmp_path: Path):
    engine = new_store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    yield engine
    engine.dispose()


def test_many_updates_of_one_object_reach_the_controller_as_one_put(engine, fabric):
    backend = client(fabric)
    worker = make_worker(engine, backend)
    try:
        record(engine, [change("p1", "network", "n1", name="v1"),
                        change("p1", "subnet", "s1", network_id="n1", cidr="10.0.0.0/24")])
        settle(worker)
        before = last_seq(fabric)
        for rev in range(2, 22):  # twenty updates, each its own transaction as Neutron would
            record(engine, [change("p1", "network", "n1", "update", revision=rev, name=f"v{rev}")])
        settle(worker)
        writes = audit(fabric, after=before)
        assert [(e["root"], e["status"], e["operations"]) for e in writes] == [("p1", 200, 1)]
        obj = fabric.get("/v1/roots/p1/objects/network/n1")["object"]
        assert obj["revision"] == 21 and obj["attributes"] == {"name": "v21"}
        assert_converged(engine, fabric)
    finally:
        worker.shutdown()
        backend.close()


def test_create_then_delete_before_a_drain_never_reaches_the_controller(engine, fabric):
    backend = client(fabric)
    worker = make_worker(engine, backend)
    try:
        record(engine, [change("p1", "network", "keep", name="kept")])
        record(engine, [change("p1", "network", "ghost", name="short-lived")])
        record(engine, [change("p1", "subnet", "ghost-sub", network_id="ghost", cidr="10.1.0.0/24")])
        record(engine, [change("p1", "subnet", "ghost-sub", "delete", revision=2)])
        record(engine, [change("p1", "network", "ghost", "delete", revision=2)])
        settle(worker)
        writes = audit(fabric)
        # One batch carrying only the surviving network: the ghosts were never sent, not even as deletes.
        assert [(e["root"], e["status"], e["operations"]) for e in writes] == [("p1", 200, 1)]
        assert [o["id"] for o in fabric.objects("p1")] == ["keep"]
        assert_converged(engine, fabric)
    finally:
        worker.shutdown()
        backend.close()


def test_a_running_worker_picks_up_a_committed_change(engine, fabric):
    backend = client(fabric)
    worker = make_worker(engine, backend, poll_interval=0.05)
    thread = threading.Thread(target=worker.run, name="worker", daemon=True)
    thread.start()
    try:
        record(engine, [change("p1", "network", "n1", name="first")])
        eventually(lambda: [o for o in fabric.objects("p1") if o["id"] == "n1"], "network n1 on the controller")
        record(engine, [change("p1", "network", "n1", "update", revision=2, name="second")])
        worker.nudge()  # what the Neutron driver's postcommit does in-process; polling alone also works
        eventually(lambda: [o for o in fabric.objects("p1") if o["attributes"].get("name") == "second"],
                   "the update on the controller")
        record(engine, [change("p1", "network", "n1", "delete", revision=3)])
        eventually(lambda: not fabric.objects("p1"), "the delete on the controller")
    finally:
        worker.stop()
        thread.join(30)
        backend.close()
    assert not thread.is_alive()
    assert_converged(engine, fabric)
