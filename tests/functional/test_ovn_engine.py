"""The engine against OVN: intent recorded in a real store, a worker pushing through the OVN backend to a
real Northbound DB. Convergence means the store's acknowledged fingerprint of every root is what the
backend computes from NB, every object is synced, and the rows are there; drift made in NB behind the
engine's back is repaired through the backend's push (the sweep is switched off).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_support import change, fast_config, journal_count, record, settle, statuses, store_roots
from ovn_support import connect, eventually, nb_names
from sqlalchemy.engine import Engine

from converge.backends.ovn import OvnBackend
from converge.core import canonical
from converge.core.ids import RootId, WorkerId
from converge.engine.worker import Worker
from converge.store import db, leases, migrate, operator
from converge.store.schema import ObjectState, roots
from converge.testing.ovn import OvnControlPlane

pytestmark = pytest.mark.ovn


@pytest.fixture
def ovn(tmp_path: Path) -> Iterator[OvnControlPlane]:
    """A fresh NB per test: a store owns every Converge-stamped row of its NB (roots it does not know are
    emptied by the sweep), so two tests' stores must not share one."""
    with OvnControlPlane(tmp_path / "ovn") as control:
        yield control


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = db.make_engine(f"sqlite:///{tmp_path / 'store.sqlite'}")
    migrate.upgrade(e)
    yield e
    e.dispose()


@pytest.fixture
def backend(ovn: OvnControlPlane) -> Iterator[OvnBackend]:
    b = connect(ovn, gateway_chassis=["chassis-1"])
    yield b
    b.close()


def u() -> str:
    return str(uuid.uuid4())


def topology(root: str, admin: str) -> tuple[list[Any], dict[str, str]]:
    """A project with two networks, a router between them with a gateway on an external network (owned
    by ``admin``), a floating IP, a security group with rules, and ports."""
    ext, ext_sub, net1, sub1, net2, sub2, sg, r1, r2, router, p1, p2, gw, fip = (u() for _ in range(14))
    i1, i2 = u(), u()
    ids = {"net1": net1, "p1": p1, "p2": p2, "sg": sg, "r1": r1, "router": router, "i1": i1, "ext": ext}
    changes = [
        change(admin, "network", ext, name="public", **{"router:external": True,
                                                          "provider:network_type": "geneve"}),
        change(admin, "subnet", ext_sub, network_id=ext, cidr="172.24.4.0/24", ip_version=4,
               gateway_ip="172.24.4.1", enable_dhcp=False),
        change(root, "network", net1, name="n1", **{"provider:network_type": "geneve"}),
        change(root, "subnet", sub1, network_id=net1, cidr="10.10.1.0/24", ip_version=4, gateway_ip="10.10.1.1",
               enable_dhcp=True),
        change(root, "network", net2, name="n2", **{"provider:network_type": "geneve"}),
        change(root, "subnet", sub2, network_id=net2, cidr="10.10.2.0/24", ip_version=4, gateway_ip="10.10.2.1",
               enable_dhcp=True),
        change(root, "security_group", sg, name="web", stateful=True),
        change(root, "security_group_rule", r1, security_group_id=sg, direction="ingress", ethertype="IPv4",
               protocol="tcp", port_range_min=80, port_range_max=80),
        change(root, "security_group_rule", r2, security_group_id=sg, direction="egress", ethertype="IPv4"),
        change(root, "port", p1, network_id=net1, mac_address="fa:16:3e:10:00:01", device_owner="compute:nova",
               fixed_ips=[{"subnet_id": sub1, "ip_address": "10.10.1.5"}], security_groups=[sg],
               port_security_enabled=True, admin_state_up=True),
        change(root, "port", p2, network_id=net2, mac_address="fa:16:3e:10:00:02", device_owner="compute:nova",
               fixed_ips=[{"subnet_id": sub2, "ip_address": "10.10.2.5"}], security_groups=[sg],
               port_security_enabled=True, admin_state_up=True),
        change(root, "port", i1, network_id=net1, mac_address="fa:16:3e:10:01:01",
               device_owner="network:router_interface", device_id=router,
               fixed_ips=[{"subnet_id": sub1, "ip_address": "10.10.1.1"}], admin_state_up=True),
        change(root, "port", i2, network_id=net2, mac_address="fa:16:3e:10:01:02",
               device_owner="network:router_interface", device_id=router,
               fixed_ips=[{"subnet_id": sub2, "ip_address": "10.10.2.1"}], admin_state_up=True),
        change("no-project", "port", gw, network_id=ext, mac_address="fa:16:3e:10:02:01",
               device_owner="network:router_gateway", device_id=router,
               fixed_ips=[{"subnet_id": ext_sub, "ip_address": "172.24.4.10"}], admin_state_up=True),
        change(root, "router", router, name="r", admin_state_up=True, external_network_id=ext, enable_snat=True,
               external_fixed_ips=[{"subnet_id": ext_sub, "ip_address": "172.24.4.10"}],
               gateway_port_id=gw, gateway_mac_address="fa:16:3e:10:02:01", gateway_networks=["172.24.4.10/24"],
               gateway_nexthops=["172.24.4.1"]),
        change(root, "router_interface", i1, router_id=router, subnet_id=sub1, subnet_ids=[sub1], port_id=i1,
               mac_address="fa:16:3e:10:01:01", networks=["10.10.1.1/24"]),
        change(root, "router_interface", i2, router_id=router, subnet_id=sub2, subnet_ids=[sub2], port_id=i2,
               mac_address="fa:16:3e:10:01:02", networks=["10.10.2.1/24"]),
        change(root, "floating_ip", fip, floating_network_id=ext, floating_ip_address="172.24.4.20", port_id=p1,
               fixed_ip_address="10.10.1.5", router_id=router),
    ]
    return changes, ids


def assert_converged(engine: Engine, backend: OvnBackend) -> None:
    assert journal_count(engine) == 0
    bad = {k: (s.state, s.message) for k, s in statuses(engine).items() if s.state != ObjectState.SYNCED.value}
    assert not bad, bad
    for root, row in store_roots(engine).items():
        assert backend.root_etag(root) == int(row.acked, 16), f"root {root}: NB differs from what was acknowledged"


def test_a_topology_converges_on_ovn_with_snat_per_interface_subnet(engine: Engine, backend: OvnBackend,
                                                                   ovn: OvnControlPlane) -> None:
    root, admin = "p-" + uuid.uuid4().hex[:10], "admin-" + uuid.uuid4().hex[:10]
    changes, ids = topology(root, admin)
    record(engine, changes)
    settle(Worker(engine, backend, fast_config(), worker_id=WorkerId("w1")))
    assert_converged(engine, backend)
    assert f"neutron-{ids['router']}" in nb_names(ovn, "Logical_Router")
    nat = ovn.nbctl("--bare", "--columns=type,logical_ip,external_ip", "list", "NAT")
    assert "10.10.1.0/24" in nat and "10.10.2.0/24" in nat, nat  # one snat per attached subnet
    assert "dnat_and_snat" in nat and "172.24.4.20" in nat
    assert "lrp-" + ids["i1"] in nb_names(ovn, "Logical_Router_Port")
    assert ovn.nbctl("--bare", "--columns=chassis_name", "list", "Gateway_Chassis").strip() == "chassis-1"
    # an interface removed: its snat row goes with it, the router's fingerprint stays exact
    record(engine, [change(root, "router_interface", ids["i1"], op="delete", revision=2)])
    settle(Worker(engine, backend, fast_config(), worker_id=WorkerId("w1")))
    assert_converged(engine, backend)
    assert "10.10.1.0/24" not in ovn.nbctl("--bare", "--columns=logical_ip", "list", "NAT")


def test_drift_in_nb_is_repaired_through_the_backends_push_without_a_sweep(engine: Engine, backend: OvnBackend,
                                                                           ovn: OvnControlPlane) -> None:
    root, admin = "p-" + uuid.uuid4().hex[:10], "admin-" + uuid.uuid4().hex[:10]
    changes, ids = topology(root, admin)
    record(engine, changes)
    worker = Worker(engine, backend, fast_config(sweep_interval=3600.0), worker_id=WorkerId("w1"))
    settle(worker)
    seen: list[str] = []
    backend.on_drift(seen.append)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        took = []
        pg = f"pg_{ids['sg'].replace('-', '_')}"

        def acl_of_rule() -> str:
            return ovn.nbctl("--bare", "--columns=_uuid", "find", "ACL",
                             f'external_ids:"neutron:security_group_rule_id"="{ids["r1"]}"').strip()

        def restored() -> bool:
            if ids["p1"] not in nb_names(ovn, "Logical_Switch_Port") or pg not in nb_names(ovn, "Port_Group"):
                return False
            lsp = ovn.nbctl("--bare", "--columns=_uuid", "find", "Logical_Switch_Port", f"name={ids['p1']}")
            members = ovn.nbctl("--bare", "--columns=ports", "list", "Port_Group", pg).split()
            return bool(acl_of_rule()) and lsp.strip() in members

        for damage in (lambda: ovn.nbctl("lsp-del", ids["p1"]),
                       lambda: ovn.nbctl("remove", "Port_Group", pg, "acls", acl_of_rule()),
                       lambda: ovn.nbctl("destroy", "Port_Group", pg)):
            seen.clear()
            began = time.monotonic()
            damage()
            eventually(lambda: root in seen, "the damage to be seen as drift")
            eventually(restored, "the repair")
            eventually(lambda: canonical.hex256(backend.root_etag(root)) == store_roots(engine)[root].acked,
                       "the acknowledged fingerprint to match NB again")
            took.append(time.monotonic() - began)
        print(f"repaired after NB damage in {', '.join(f'{t:.3f}' for t in took)} s")
    finally:
        worker.stop()
        thread.join(10)
    assert_converged(engine, backend)


def test_ports_edited_one_after_the_other_behind_our_back_are_both_put_back(engine: Engine, backend: OvnBackend,
                                                                           ovn: OvnControlPlane) -> None:
    """Two ports' addresses edited with ovn-nbctl in quick succession (as the chaos suite does): the second
    edit often lands while the first one's fix is on its way (412 right after repair). The first port's
    difference, learned by that repair, must still be put back (it once stayed edited for good, with
    every fingerprint agreeing: the repair had made the edit the store's belief)."""
    root, admin = "p-" + uuid.uuid4().hex[:10], "admin-" + uuid.uuid4().hex[:10]
    changes, ids = topology(root, admin)
    record(engine, changes)
    worker = Worker(engine, backend, fast_config(sweep_interval=3600.0), worker_id=WorkerId("w1"))
    settle(worker)

    def addresses(port: str) -> str:
        return ovn.nbctl("--bare", "--columns=addresses", "list", "Logical_Switch_Port", port).strip()

    original = {p: addresses(ids[p]) for p in ("p1", "p2")}
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        ovn.nbctl("lsp-set-addresses", ids["p1"], "fa:16:3e:ff:00:01 10.255.0.1")
        ovn.nbctl("lsp-set-addresses", ids["p2"], "fa:16:3e:ff:00:02 10.255.0.2")
        eventually(lambda: {p: addresses(ids[p]) for p in original} == original, "both ports' addresses back")
        eventually(lambda: canonical.hex256(backend.root_etag(RootId(root))) == store_roots(engine)[root].acked
                   and journal_count(engine) == 0, "the acknowledged fingerprint to match NB, the journal drained")
    finally:
        worker.stop()
        thread.join(10)
    assert_converged(engine, backend)


def test_a_row_nb_refuses_is_an_error_naming_it_and_nothing_else_stops(engine: Engine, backend: OvnBackend,
                                                                       ovn: OvnControlPlane) -> None:
    """Another writer holds the logical port name a Neutron port needs (names of ports are unique in NB):
    that port is refused with NB's own words, the rest of the project syncs, and once the name is free a
    retry syncs it."""
    root, admin = "p-" + uuid.uuid4().hex[:10], "admin-" + uuid.uuid4().hex[:10]
    changes, ids = topology(root, admin)
    ovn.nbctl("ls-add", "someone-else")
    ovn.nbctl("lsp-add", "someone-else", ids["p2"])
    record(engine, changes)
    settle(Worker(engine, backend, fast_config(), worker_id=WorkerId("w1")))
    state = statuses(engine)
    refused = state[("port", ids["p2"])]
    assert refused.state == ObjectState.ERROR.value and "constraint violation" in (refused.message or ""), refused
    others = {k: s.state for k, s in state.items() if k != ("port", ids["p2"])}
    assert set(others.values()) == {ObjectState.SYNCED.value}, others
    ovn.nbctl("lsp-del", ids["p2"])
    with engine.begin() as conn:
        operator.retry(conn, root=None, keys=[("port", ids["p2"])])
    settle(Worker(engine, backend, fast_config(), worker_id=WorkerId("w1")))
    assert_converged(engine, backend)


def test_status_names_an_unreachable_nb(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERGE_")}
    done = subprocess.run([sys.executable, "-m", "converge.cli.main", "status", "--db",
                           f"sqlite:///{tmp_path / 'store.sqlite'}", "--backend", "ovn", "--ovn-nb", "tcp:127.0.0.1:1"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert "tcp:127.0.0.1:1" in done.stdout and "down" in done.stdout, done.stdout + done.stderr


def test_a_new_store_next_to_an_nb_fenced_by_an_older_one_moves_past_its_epochs(engine: Engine, backend: OvnBackend,
                                                                                ovn: OvnControlPlane,
                                                                                tmp_path: Path) -> None:
    """A store rebuilt next to an NB whose markers hold epochs of the old store's history: the new store's
    holders prove their leases and move past them, instead of being fenced for ever."""
    root, admin = "p-" + uuid.uuid4().hex[:10], "admin-" + uuid.uuid4().hex[:10]
    changes, _ = topology(root, admin)
    record(engine, changes)
    with engine.begin() as conn:
        leases.ensure_roots(conn, [RootId(r) for r in (root, admin, "no-project")])
        conn.execute(roots.update().values(epoch=40))
    settle(Worker(engine, backend, fast_config(), worker_id=WorkerId("old")))
    marker = ovn.nbctl("--bare", "--columns=external_ids", "list", "Address_Set")
    assert "converge:epoch=41" in marker.replace('"', ""), marker
    fresh = db.make_engine(f"sqlite:///{tmp_path / 'rebuilt.sqlite'}")
    migrate.upgrade(fresh)
    try:
        record(fresh, changes)
        settle(Worker(fresh, backend, fast_config(), worker_id=WorkerId("new")))
        assert_converged(fresh, backend)
        assert int(store_roots(fresh)[root].epoch) == 42
    finally:
        fresh.dispose()


def test_a_wiped_nb_is_seen_and_filled_again_without_a_sweep(engine: Engine, backend: OvnBackend,
                                                             ovn: OvnControlPlane) -> None:
    """NB replaced by an empty database: the IDL's new dump drops every row without a notification, and the
    replica must forget them too — else it keeps counting every object and nothing is repaired (seen in the
    chaos suite on OVN). The sweep is an hour away: the backend's own drift report does it."""
    root, admin = "p-" + uuid.uuid4().hex[:10], "admin-" + uuid.uuid4().hex[:10]
    changes, ids = topology(root, admin)
    record(engine, changes)
    worker = Worker(engine, backend, fast_config(sweep_interval=3600.0), worker_id=WorkerId("w1"))
    settle(worker)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        ovn.wipe_nb()
        eventually(lambda: ids["p1"] in nb_names(ovn, "Logical_Switch_Port")
                   and f"neutron-{ids['ext']}" in nb_names(ovn, "Logical_Switch"), "the wiped rows back in NB")
        for r in (root, admin):
            eventually(lambda r=r: canonical.hex256(backend.root_etag(RootId(r))) == store_roots(engine)[r].acked,
                       f"root {r}'s fingerprint to match NB again")
        # a port whose network (in the admin root) was not back yet waits, then goes: the fingerprints can
        # match while it waits (what was acknowledged lacks it too)
        eventually(lambda: all(s.state == ObjectState.SYNCED.value for s in statuses(engine).values()),
                   "every object synced again")
    finally:
        worker.stop()
        thread.join(10)
    assert_converged(engine, backend)
    fresh = OvnBackend([ovn.nb_tcp], timeout=30.0, writer="fresh")
    try:
        eventually(fresh.connected, "a second replica to connect")
        for r in (root, admin):
            assert fresh.root_etag(RootId(r)) == backend.root_etag(RootId(r)), "two replicas of one NB disagree"
    finally:
        fresh.close()
