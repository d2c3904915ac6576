"""Failure paths of the sync engine, each made to happen for real: the controller down, failing, hung,
wiped, losing or garbling objects, refusing one object; and a dead first controller URL. Every test ends
with exact convergence (controller objects == desired objects, ETags == acknowledged fingerprints)."""

import json
import threading
from pathlib import Path

import httpx
import pytest
from engine_support import (
    assert_converged,
    audit,
    change,
    cli_env,
    client,
    controller_objects,
    eventually,
    journal_count,
    last_seq,
    make_worker,
    new_store,
    record,
    run_cli,
    settle,
    statuses,
    store_desired,
)

from converge.bench.workload import Workload
from converge.store import operator, report
from converge.testing.mariadb import free_port


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store.sqlite"


@pytest.fixture
def engine(store_path: Path):
    engine = new_store(f"sqlite:///{store_path}")
    yield engine
    engine.dispose()


def roots_by_name(engine):
    with engine.connect() as conn:
        return {r.root: r for r in report.roots_report(conn)}


def step_until(worker, probe, what):
    """Step the worker (pausing briefly between idle steps) until ``probe()`` holds."""
    def once():
        worker.step()
        return probe()
    return eventually(once, what, pause=0.02)


def listening(fabric):
    try:
        return httpx.get(f"{fabric.url}/healthz", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


class Running:
    """A worker's ``run()`` loop on a thread, stopped and joined on exit."""

    def __init__(self, worker):
        self.worker = worker
        self.thread = threading.Thread(target=worker.run, name=f"worker-{worker.id}", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self.worker

    def __exit__(self, *exc):
        self.worker.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the worker thread did not stop"


# -- the controller down, failing, hung --------------------------------------------------------------------

def test_controller_down_during_load_loses_nothing_and_converges_after_restart(engine, fabric):
    workload = Workload(4, seed=11, prefix="down")
    backend = client(fabric, breaker_reset=0.3)
    worker = make_worker(engine, backend)
    try:
        fabric.stop()
        recorded = record(engine, workload.changes(400), per_transaction=1)  # record() never calls out
        assert recorded == 400 and journal_count(engine) == 400
        names = {r for r, _, _ in workload.desired().values()}
        step_until(worker, lambda: all(r.failures >= 2 for n, r in roots_by_name(engine).items() if n in names),
                   "every root to fail twice")
        for name, r in roots_by_name(engine).items():
            assert r.last_error and "no controller answered" in r.last_error, (name, r.last_error)
            assert r.pending > 0
        assert journal_count(engine) == 400, "a failed attempt drained journal rows"
        assert not statuses(engine), "a failed attempt wrote object statuses"
        fabric.start()  # same port, same (empty) database
        settle(worker)
        assert_converged(engine, fabric, workload.desired())
        assert all(r.failures == 0 and r.last_error is None for r in roots_by_name(engine).values())
    finally:
        worker.shutdown()
        backend.close()


def test_refused_connections_then_5xx_then_flaky_5xx_converge_once_cleared(engine, fabric):
    workload = Workload(3, seed=12, prefix="flaky")
    backend = client(fabric, breaker_reset=0.2)
    worker = make_worker(engine, backend)
    try:
        fabric.admin("POST", "refuse", {"seconds": 1})
        record(engine, workload.changes(120))
        step_until(worker, lambda: any(r.failures for r in roots_by_name(engine).values()), "a refused attempt")
        eventually(lambda: listening(fabric), "the controller to listen again")
        fabric.admin("PUT", "faults", {"error_rate": 1.0, "error_status": 503})  # the admin API is exempt
        step_until(worker, lambda: any("HTTP 503" in (r.last_error or "") for r in roots_by_name(engine).values()),
                   "a 503 recorded as the root's last error")
        assert journal_count(engine) == 120
        fabric.admin("PUT", "faults", {"error_rate": 0.5, "error_status": 500})
        record(engine, workload.changes(60))
        settle(worker)  # retries with backoff get through half the calls failing
        fabric.admin("PUT", "faults", {"error_rate": 0.0})
        assert_converged(engine, fabric, workload.desired())
        assert all(e["status"] in (200, 412) for e in audit(fabric))  # injected failures apply nothing
    finally:
        worker.shutdown()
        backend.close()


def test_a_hung_controller_times_out_backs_off_and_converges_after_release(engine, fabric):
    workload = Workload(2, seed=13, prefix="hang")
    backend = client(fabric, timeout=0.4, connect_timeout=0.4, breaker_reset=0.2)
    worker = make_worker(engine, backend, concurrency=1)
    try:
        record(engine, workload.changes(40))
        settle(worker)
        fabric.admin("PUT", "faults", {"hang": True})
        record(engine, workload.changes(40))
        step_until(worker, lambda: any("Timeout" in (r.last_error or "") for r in roots_by_name(engine).values()),
                   "a timeout recorded as the root's last error")
        assert journal_count(engine) == 40
        # Releasing the held calls may apply batches the worker already gave up on: the worker must
        # notice (412 or an unexpected ETag), repair, and still end exact.
        fabric.admin("PUT", "faults", {"hang": False})
        settle(worker)
        assert_converged(engine, fabric, workload.desired())
    finally:
        fabric.admin("PUT", "faults", {"hang": False})
        worker.shutdown()
        backend.close()


# -- drift: wipe, drop, corrupt ----------------------------------------------------------------------------

def test_a_wiped_controller_is_found_by_the_sweep_and_only_roots_that_need_it_are_rewritten(engine, fabric):
    workload = Workload(4, seed=14, prefix="wipe")
    backend = client(fabric)
    worker = make_worker(engine, backend, sweep_interval=0.2)
    try:
        record(engine, workload.changes(200))
        # A root whose objects are all gone: its acknowledged fingerprint is 0, a wipe cannot hurt it.
        record(engine, [change("wipe-empty", "network", "e1", name="short")])
        settle(worker)
        record(engine, [change("wipe-empty", "network", "e1", "delete", revision=2)])
        settle(worker)
        assert not fabric.objects("wipe-empty")
        before = last_seq(fabric)
        removed = fabric.admin("POST", "wipe")["removed"]
        assert removed == len(store_desired(engine))
        wiped = {e["root"] for e in audit(fabric, after=before) if e["writer"] == "fault:wipe"}
        fault_seq = last_seq(fabric)
        with Running(worker):
            eventually(lambda: sum(len(fabric.objects(r)) for r in wiped) == removed,
                       "the sweep to repair every wiped root")
        assert_converged(engine, fabric, workload.desired())
        writes = audit(fabric, after=fault_seq)
        assert {e["root"] for e in writes} == wiped == {r for r, _, _ in workload.desired().values()}
        # A root's objects may name the admin root's external network: until that root is repaired too,
        # the controller answers their puts 409 missing_parent, and they wait instead of failing.
        assert all(e["writer"] == worker.id and e["status"] in (200, 409) for e in writes), writes
    finally:
        worker.shutdown()
        backend.close()


def test_dropped_and_corrupted_objects_in_one_root_are_repaired_locally(engine, fabric):
    workload = Workload(2, seed=15, prefix="drift")  # drift-admin and one big root, drift-00000
    backend = client(fabric)
    worker = make_worker(engine, backend, sweep_interval=0.2)
    try:
        record(engine, workload.changes(1200))
        for i in range(6):  # small roots around it, which the repair must leave alone
            record(engine, [change(f"small-{i}", "network", f"small-{i}-net", name=f"n{i}"),
                            change(f"small-{i}", "subnet", f"small-{i}-sub", network_id=f"small-{i}-net",
                                   cidr=f"10.9.{i}.0/24")])
        settle(worker)
        assert_converged(engine, fabric)
        victim = "drift-00000"
        victim_bytes = sum(len(json.dumps(o, separators=(",", ":"))) for o in fabric.objects(victim))
        before = last_seq(fabric)
        dropped = fabric.admin("POST", "drop", {"count": 3, "root": victim})["objects"]
        corrupted = fabric.admin("POST", "corrupt", {"count": 3, "root": victim})["objects"]
        assert len(dropped) == 3 and len(corrupted) == 3
        faults = audit(fabric, after=before)
        assert {e["writer"] for e in faults} == {"fault:drop", "fault:corrupt"}
        assert {e["root"] for e in faults} == {victim}
        fault_seq = max(e["seq"] for e in faults)
        traffic_before = dict(backend.traffic.by_purpose)
        expected = store_desired(engine)
        with Running(worker):
            eventually(lambda: {k: v for k, v in expected.items() if v[0] == victim}
                       == controller_objects(fabric, victim), "the sweep to repair the damaged root")
        assert_converged(engine, fabric)
        writes = audit(fabric, after=fault_seq)
        assert writes and {e["root"] for e in writes} == {victim}, "a root that was not damaged was written"
        assert all(e["writer"] == worker.id and e["status"] == 200 for e in writes), (writes, dropped, corrupted)
        assert sum(e["operations"] for e in writes) <= len(dropped) + len(corrupted)
        moved = {p: n - traffic_before.get(p, 0) for p, n in backend.traffic.by_purpose.items()}
        repair_bytes = sum(n for p, n in moved.items() if p.startswith("repair") or p in ("batch", "root"))
        assert moved.get("objects", 0) == 0  # no full read of the root
        # A full resync would at least send every object of the root once; the repair moved a fraction.
        assert repair_bytes * 4 < victim_bytes, (repair_bytes, victim_bytes, moved)
    finally:
        worker.shutdown()
        backend.close()


def test_a_child_whose_parent_in_another_root_vanished_waits_for_that_roots_repair(engine, fabric):
    backend = client(fabric)
    first = make_worker(engine, backend)
    record(engine, [change("a-admin", "network", "ext", name="public", **{"router:external": True}),
                    change("a-admin", "subnet", "ext-sub", network_id="ext", cidr="172.24.0.0/24")])
    settle(first)
    first.shutdown()
    assert len(fabric.admin("POST", "drop", {"count": 2, "root": "a-admin"})["objects"]) == 2
    # The store still believes the external network is on the controller, so the router is sent, and
    # the controller answers 409 missing_parent. The sweep runs at the end of the first step, after it.
    worker = make_worker(engine, backend, name="worker-b", sweep_interval=0.2)
    try:
        record(engine, [change("p1", "router", "r1", name="gw", external_network_id="ext")])
        worker.step()
        with engine.connect() as conn:
            (problem,) = report.problems(conn)
        assert (problem.id, problem.state) == ("r1", "blocked"), problem
        assert "ext" in problem.message
        assert not fabric.objects("p1")
        settle(worker)  # the sweep repairs a-admin; the router, waiting for it, follows
        assert_converged(engine, fabric)
    finally:
        worker.shutdown()
        backend.close()


def test_deleting_a_parent_and_its_child_in_another_root_together_converges(engine, fabric):
    backend = client(fabric)
    worker = make_worker(engine, backend, concurrency=1)  # roots by oldest change: the parent's root first
    try:
        record(engine, [change("a-admin", "network", "ext", name="public", **{"router:external": True}),
                        change("p1", "router", "r1", name="gw", external_network_id="ext")])
        settle(worker)
        # The network's delete is recorded first (as two API servers may commit them), so its root goes first.
        record(engine, [change("a-admin", "network", "ext", "delete", revision=2),
                        change("p1", "router", "r1", "delete", revision=2)])
        seq = last_seq(fabric)
        worker.step()
        # a-admin went first: the controller refused the delete (the router in p1 still named the network),
        # and the delete waits, blocked, instead of being refused for good; p1 then deleted the router.
        assert [(e["root"], e["status"]) for e in audit(fabric, after=seq)] == [("a-admin", 409), ("p1", 200)]
        with engine.connect() as conn:
            (problem,) = report.problems(conn)
        assert (problem.id, problem.state) == ("ext", "blocked") and "router r1" in problem.message
        settle(worker)
        assert_converged(engine, fabric)
    finally:
        worker.shutdown()
        backend.close()


# -- an object the controller refuses ----------------------------------------------------------------------

def build_topology(engine):
    """Root p1: a good network with subnet and port, a bad network whose subnet and port must wait, a
    security group with a rule; root p2 untouched by the fault."""
    record(engine, [
        change("p1", "network", "good-net", name="good"),
        change("p1", "subnet", "good-sub", network_id="good-net", cidr="10.0.0.0/24"),
        change("p1", "port", "good-port", network_id="good-net", mac_address="fa:16:3e:00:00:01", name=""),
        change("p1", "network", "bad-net", name="bad-network"),
        change("p1", "subnet", "bad-sub", network_id="bad-net", cidr="10.0.1.0/24", name="child"),
        change("p1", "port", "bad-port", network_id="bad-net", mac_address="fa:16:3e:00:00:02", name="child"),
        change("p1", "security_group", "sg1", name="default"),
        change("p1", "security_group_rule", "rule1", security_group_id="sg1", direction="ingress"),
        change("p2", "network", "other-net", name="other"),
    ])


@pytest.mark.parametrize("how", ["library", "cli"])
def test_a_refused_object_is_isolated_and_a_retry_releases_it_and_its_dependents(engine, store_path, fabric, how):
    backend = client(fabric)
    worker = make_worker(engine, backend)
    try:
        fabric.admin("PUT", "faults", {"reject_name_pattern": "^bad-"})
        build_topology(engine)
        settle(worker)
        with engine.connect() as conn:
            problems = {(p.kind, p.id): p for p in report.problems(conn)}
        assert set(problems) == {("network", "bad-net"), ("subnet", "bad-sub"), ("port", "bad-port")}
        refused = problems[("network", "bad-net")]
        assert refused.state == "error"
        assert "invalid_object" in refused.message and "reject_name_pattern" in refused.message
        assert "bad-network" in refused.message
        for key in [("subnet", "bad-sub"), ("port", "bad-port")]:
            assert problems[key].state == "blocked" and "bad-net" in problems[key].message
        on_controller = {o["id"] for o in fabric.objects("p1")}
        assert on_controller == {"good-net", "good-sub", "good-port", "sg1", "rule1"}
        assert {o["id"] for o in fabric.objects("p2")} == {"other-net"}
        with engine.connect() as conn:
            by_root = {r.root: r for r in report.roots_report(conn)}
        assert by_root["p1"].errors == 1 and by_root["p1"].blocked == 2 and by_root["p2"].errors == 0

        # Without a retry, passes over the root leave the refusal alone (no resend of the same state).
        seq = last_seq(fabric)
        for _ in range(3):
            worker.step()
        assert last_seq(fabric) == seq

        fabric.admin("PUT", "faults", {"reject_name_pattern": None})
        if how == "library":
            with engine.begin() as conn:
                assert operator.retry(conn) == [("network", "bad-net")]
        else:
            result = run_cli("retry", "--all", "--json", "--db", f"sqlite:///{store_path}", env=cli_env())
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout) == {"retried": ["network/bad-net"]}
        settle(worker)
        assert_converged(engine, fabric)
    finally:
        worker.shutdown()
        backend.close()


def test_an_invalid_attribute_is_refused_and_a_corrected_change_goes_through(engine, fabric):
    backend = client(fabric)
    worker = make_worker(engine, backend)
    try:
        record(engine, [change("p1", "network", "n1", name="net"),
                        change("p1", "subnet", "s1", network_id="n1", cidr="10.0.0.1/24"),  # host bits set
                        change("p1", "router_interface", "ri1", router_id="r1", subnet_id="s1"),
                        change("p1", "router", "r1", name="r")])
        settle(worker)
        with engine.connect() as conn:
            problems = {p.id: p for p in report.problems(conn)}
        assert problems["s1"].state == "error" and "cidr" in problems["s1"].message
        assert problems["ri1"].state == "blocked"
        assert {o["id"] for o in fabric.objects("p1")} == {"n1", "r1"}
        record(engine, [change("p1", "subnet", "s1", "update", revision=2, network_id="n1", cidr="10.0.0.0/24")])
        settle(worker)
        assert_converged(engine, fabric)
    finally:
        worker.shutdown()
        backend.close()


# -- failover ----------------------------------------------------------------------------------------------

def test_a_dead_first_controller_url_fails_over_to_the_second(engine, fabric):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connections are refused
    workload = Workload(3, seed=16, prefix="fo")
    backend = client([dead, fabric.url], fabric.token, writer="failover-worker")
    worker = make_worker(engine, backend)
    try:
        record(engine, workload.changes(150))
        settle(worker)
        assert_converged(engine, fabric, workload.desired())
        health = {h.url: h for h in backend.health()}
        assert health[dead].failures >= 1 and health[dead].last_error and "Connect" in health[dead].last_error
        assert health[fabric.url].state == "closed" and health[fabric.url].failures == 0
        assert backend.traffic.requests > 0
        assert {e["writer"] for e in audit(fabric)} == {"failover-worker"}
    finally:
        worker.shutdown()
        backend.close()


def test_breakers_open_while_every_controller_is_down_and_close_after_recovery(engine, fabric):
    dead = f"http://127.0.0.1:{free_port()}"
    backend = client([dead, fabric.url], fabric.token, breaker_threshold=2, breaker_reset=0.3)
    worker = make_worker(engine, backend)
    try:
        fabric.stop()
        record(engine, [change("p1", "network", "n1", name="n")])
        step_until(worker, lambda: all(h.state == "open" for h in backend.health()), "both breakers open")
        with engine.connect() as conn:
            (root,) = report.roots_report(conn)
        assert root.failures >= 1 and "no controller answered" in root.last_error
        assert "circuit open" in root.last_error or "ConnectError" in root.last_error
        fabric.start()
        settle(worker)
        assert_converged(engine, fabric)
        health = {h.url: h for h in backend.health()}
        assert health[fabric.url].state == "closed"
    finally:
        worker.shutdown()
        backend.close()
