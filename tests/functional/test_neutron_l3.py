"""Routers, router interfaces and floating IPs through the real Neutron API with the ``converge_router``
service plugin: after every step a user might take, the controller holds exactly what Neutron holds, for
the tenant's project and for the project owning the external network, and ``converge:sync_state`` of
routers and floating IPs reads ``synced``.

One stack per module (MariaDB, migrations, uWSGI, periodic workers running the sync worker against a
fabric controller process), as in ``test_neutron_converge.py``; the comparison is extended here to the L3
kinds, each derived from the Neutron API: ``GET /routers`` (with each router's gateway port and its
subnets), ``GET /floatingips`` and the ports whose device_owner is ``network:router_interface`` (with
their subnets).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import neutron_support
import pytest
import sqlalchemy
from neutron_support import (
    DEADLINE,
    L3_COLLECTIONS,
    MARKS,
    State,
    converge_stack,
    listed,
    module_cloud,  # noqa: F401 - the shared "cloud" fixture
    module_fabric,  # noqa: F401 - the shared "fabric" fixture
)
from openstack.connection import Connection

from converge.neutron import adopt
from converge.store import db
from converge.store.schema import desired
from converge.testing.fabric import FabricProcess
from converge.testing.mariadb import MariaDB
from converge.testing.neutron import NeutronStack, owned

pytestmark = MARKS

@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mariadb: MariaDB, fabric: FabricProcess
          ) -> Iterator[NeutronStack]:
    with converge_stack(tmp_path_factory.mktemp("neutron"), mariadb=mariadb, fabric=fabric,
                        service_plugins=("converge_router",)) as stack:
        yield stack


def wait_converged(cloud: Connection, fabric: FabricProcess, *projects: str) -> State:
    return neutron_support.wait_converged(cloud, fabric, *projects, collections=L3_COLLECTIONS)


def sync_states(cloud: Connection, project: str) -> dict[tuple[str, str], tuple[str, str | None]]:
    """``converge:sync_state`` and error of every router and floating IP of the project, in the list and in GET."""
    out = {}
    for collection, single in (("routers", "router"), ("floatingips", "floatingip")):
        for item in listed(cloud, collection, project):
            one = cloud.network.get(f"/{collection}/{item['id']}").json()[single]
            out[(f"list {collection}", item["id"])] = (item["converge:sync_state"], item["converge:sync_error"])
            out[(f"GET {collection}", item["id"])] = (one["converge:sync_state"], one["converge:sync_error"])
    return out


def assert_synced(cloud: Connection, project: str) -> None:
    """Converged is shown as synced; the status row may land just after the controller answered, so poll."""
    end = time.monotonic() + DEADLINE
    while True:
        states = sync_states(cloud, project)
        if set(states.values()) <= {("synced", None)} or time.monotonic() > end:
            break
        time.sleep(0.2)
    assert states and {k: v for k, v in states.items() if v != ("synced", None)} == {}


def external_network(cloud: Connection, project: str, cidr: str) -> Any:
    net = cloud.network.create_network(**owned(project, name=f"public-{project}", is_router_external=True))
    cloud.network.create_subnet(**owned(project, network_id=net.id, cidr=cidr, ip_version=4))
    return net


def gateway_port(cloud: Connection, router_id: str) -> Any:
    return next(iter(cloud.network.ports(device_id=router_id, device_owner="network:router_gateway")))


def tenant_network(cloud: Connection, project: str, name: str, cidr: str) -> tuple[Any, Any]:
    net = cloud.network.create_network(**owned(project, name=name))
    return net, cloud.network.create_subnet(**owned(project, network_id=net.id, cidr=cidr, ip_version=4))


def test_a_router_with_interfaces_and_a_floating_ip_converges_through_updates_and_deletes(cloud, fabric):
    ext_project, project = "p-l3-public", "p-l3-tenant"
    ext = external_network(cloud, ext_project, "172.24.4.0/24")
    net, sub = tenant_network(cloud, project, "inside", "10.10.0.0/24")
    net2, sub2 = tenant_network(cloud, project, "beside", "10.20.0.0/24")
    router = cloud.network.create_router(**owned(project, name="edge", external_gateway_info={"network_id": ext.id}))
    by_subnet = cloud.network.add_interface_to_router(router, subnet_id=sub.id)
    spare = cloud.network.create_port(**owned(project, network_id=net2.id,
                                              fixed_ips=[{"subnet_id": sub2.id, "ip_address": "10.20.0.1"}]))
    by_port = cloud.network.add_interface_to_router(router, port_id=spare.id)
    vm = cloud.network.create_port(**owned(project, network_id=net.id, name="vm", binding_host_id="compute-1"))
    fip = cloud.network.create_ip(**owned(project, floating_network_id=ext.id, port_id=vm.id))

    state = wait_converged(cloud, fabric, project, ext_project)
    assert state[("router", router.id)]["external_network_id"] == ext.id
    gateway = gateway_port(cloud, router.id)
    assert {k: v for k, v in state[("router", router.id)].items() if k.startswith("gateway_")} == {
        "gateway_port_id": gateway.id, "gateway_mac_address": gateway.mac_address,
        "gateway_networks": [f"{gateway.fixed_ips[0]['ip_address']}/24"], "gateway_nexthops": ["172.24.4.1"]}
    inside = cloud.network.get_port(by_subnet["port_id"])
    assert state[("router_interface", inside.id)] == {
        "router_id": router.id, "subnet_id": sub.id, "subnet_ids": [sub.id], "port_id": inside.id,
        "mac_address": inside.mac_address, "networks": ["10.10.0.1/24"]}
    assert state[("router_interface", spare.id)] == {"router_id": router.id, "subnet_id": sub2.id,
                                                      "subnet_ids": [sub2.id], "port_id": spare.id,
                                                      "mac_address": spare.mac_address, "networks": ["10.20.0.1/24"]}
    assert by_port["port_id"] == spare.id
    assert state[("floating_ip", fip.id)]["port_id"] == vm.id
    assert state[("floating_ip", fip.id)]["floating_network_id"] == ext.id  # another project's network
    assert ("network", ext.id) in {(o["kind"], o["id"]) for o in fabric.objects(ext_project)}
    assert_synced(cloud, project)

    cloud.network.update_ip(fip, port_id=None)  # disassociate
    state = wait_converged(cloud, fabric, project, ext_project)
    assert state[("floating_ip", fip.id)].get("port_id") is None
    cloud.network.update_ip(fip, port_id=vm.id)  # re-associate
    cloud.network.update_router(router, name="edge-renamed")
    state = wait_converged(cloud, fabric, project, ext_project)
    assert state[("floating_ip", fip.id)]["port_id"] == vm.id
    assert state[("router", router.id)]["name"] == "edge-renamed"
    assert_synced(cloud, project)

    cloud.network.delete_ip(fip)  # the floating IP, then its port
    cloud.network.delete_port(vm)
    cloud.network.remove_interface_from_router(router, subnet_id=sub.id)  # the interfaces, then the router
    cloud.network.remove_interface_from_router(router, port_id=spare.id)
    state = wait_converged(cloud, fabric, project, ext_project)
    assert not [k for k in state if k[0] in ("floating_ip", "router_interface")]
    cloud.network.update_router(router, external_gateway_info={})  # clear the gateway
    state = wait_converged(cloud, fabric, project, ext_project)
    assert state[("router", router.id)].get("external_network_id") is None
    assert not [k for k in state[("router", router.id)] if k.startswith("gateway_")]
    assert_synced(cloud, project)
    cloud.network.delete_router(router)
    for subnet, network in ((sub, net), (sub2, net2)):
        cloud.network.delete_subnet(subnet)
        cloud.network.delete_network(network)
    cloud.network.delete_network(ext)
    state = wait_converged(cloud, fabric, project, ext_project)
    assert not [k for k in state if k[0] in ("router", "network", "subnet", "port")]


def test_deleting_in_the_other_order_a_port_under_a_floating_ip_and_a_router_with_its_gateway(cloud, fabric):
    ext_project, project = "p-l3-public2", "p-l3-tenant2"
    ext = external_network(cloud, ext_project, "172.25.4.0/24")
    ext_subnet = next(iter(cloud.network.subnets(network_id=ext.id)))
    cloud.network.put(f"/subnets/{ext_subnet.id}", json={"subnet": {"gateway_ip": None}})  # no default route
    net, sub = tenant_network(cloud, project, "inside", "10.30.0.0/24")
    router = cloud.network.create_router(**owned(project, name="late-gateway"))
    cloud.network.add_interface_to_router(router, subnet_id=sub.id)
    cloud.network.update_router(router, external_gateway_info={"network_id": ext.id})  # gateway set by update
    vm = cloud.network.create_port(**owned(project, network_id=net.id, name="vm"))
    fip = cloud.network.create_ip(**owned(project, floating_network_id=ext.id, port_id=vm.id))
    state = wait_converged(cloud, fabric, project, ext_project)
    assert state[("router", router.id)]["external_network_id"] == ext.id
    assert state[("router", router.id)]["gateway_port_id"] == gateway_port(cloud, router.id).id
    assert state[("router", router.id)]["gateway_nexthops"] == []  # the external subnet has no gateway
    assert state[("floating_ip", fip.id)]["router_id"] == router.id
    assert_synced(cloud, project)

    cloud.network.delete_port(vm)  # Neutron disassociates the floating IP in the port's transaction
    state = wait_converged(cloud, fabric, project, ext_project)
    freed = state[("floating_ip", fip.id)]
    assert freed.get("port_id") is None and freed.get("router_id") is None
    interface = next(iter(k for k in state if k[0] == "router_interface"))
    cloud.network.remove_interface_from_router(router, port_id=interface[1])
    cloud.network.delete_router(router)  # its gateway still set: Neutron removes the gateway port itself
    state = wait_converged(cloud, fabric, project, ext_project)
    assert ("router", router.id) not in state and not [k for k in state if k[0] == "router_interface"]
    assert_synced(cloud, project)
    cloud.network.delete_ip(fip)
    cloud.network.delete_subnet(sub)
    cloud.network.delete_network(net)
    cloud.network.delete_network(ext)
    state = wait_converged(cloud, fabric, project, ext_project)
    assert not [k for k in state if k[0] != "security_group" and k[0] != "security_group_rule"]


def test_one_interface_port_with_several_ipv6_prefixes_carries_them_all(cloud, fabric):
    """Neutron puts a network's IPv6 subnets added to one router on a single router port."""
    project = "p-l3-v6"
    net = cloud.network.create_network(**owned(project, name="v6"))
    slaac = {"ip_version": 6, "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"}
    first, second = (cloud.network.create_subnet(**owned(project, network_id=net.id, cidr=cidr, **slaac))
                     for cidr in ("fd00:61::/64", "fd00:62::/64"))
    router = cloud.network.create_router(**owned(project, name="v6-edge"))
    port = cloud.network.add_interface_to_router(router, subnet_id=first.id)["port_id"]
    assert cloud.network.add_interface_to_router(router, subnet_id=second.id)["port_id"] == port
    state = wait_converged(cloud, fabric, project)
    assert state[("router_interface", port)]["subnet_ids"] == sorted([first.id, second.id])
    assert state[("router_interface", port)]["networks"] == sorted([f"{first.gateway_ip}/64",
                                                                    f"{second.gateway_ip}/64"])

    cloud.network.remove_interface_from_router(router, subnet_id=second.id)  # the port keeps the other prefix
    state = wait_converged(cloud, fabric, project)
    assert state[("router_interface", port)]["subnet_ids"] == [first.id]
    assert state[("router_interface", port)]["networks"] == [f"{first.gateway_ip}/64"]
    cloud.network.delete_subnet(second)
    cloud.network.remove_interface_from_router(router, subnet_id=first.id)
    cloud.network.delete_router(router)
    cloud.network.delete_subnet(first)
    cloud.network.delete_network(net)
    state = wait_converged(cloud, fabric, project)
    assert not [k for k in state if k[0] in ("router", "router_interface", "subnet", "network")]


def test_a_router_renamed_while_its_gateway_port_is_being_created_keeps_both_changes(cloud, stack, fabric):
    """The gateway port's transaction reads the router; a rename committed after that transaction began
    (REPEATABLE READ: its reads come from a snapshot) has already recorded a higher revision. Made to happen
    for real: another MariaDB connection holds the gateway's chosen IP (an uncommitted row in Neutron's
    ``ipamallocations``), so the port's transaction waits there, after its first read and before the router
    is read; the rename commits meanwhile; the holder rolls back. Without the gateway transaction writing
    the router (see ``l3._record_gateway``) the ordering guard drops the gateway from intent."""
    ext_project, project = "p-l3-public3", "p-l3-tenant3"
    ext = external_network(cloud, ext_project, "172.26.4.0/24")
    subnet = next(iter(cloud.network.subnets(network_id=ext.id)))
    gateway = {"network_id": ext.id, "external_fixed_ips": [{"subnet_id": subnet.id, "ip_address": "172.26.4.50"}]}
    engine = sqlalchemy.create_engine(stack.db_url)
    pool = ThreadPoolExecutor(1)
    try:
        with engine.connect() as holder:
            ipam_subnet = holder.execute(sqlalchemy.text(
                "SELECT id FROM ipamsubnets WHERE neutron_subnet_id = :s"), {"s": subnet.id}).scalar_one()
            holder.execute(sqlalchemy.text("INSERT INTO ipamallocations (ip_address, status, ipam_subnet_id) "
                                           "VALUES ('172.26.4.50', 'ALLOCATED', :s)"), {"s": ipam_subnet})
            creating = pool.submit(cloud.network.create_router,
                                   **owned(project, name="racing", external_gateway_info=gateway))
            router = wait_for(lambda: next(iter(cloud.network.routers(name="racing", project_id=project)), None))
            wait_for(lambda: waiting_for_ip(holder))
            cloud.network.update_router(router, name="renamed-meanwhile")
            holder.rollback()
        created = creating.result(timeout=DEADLINE)
    finally:
        pool.shutdown(wait=False)
        engine.dispose()
    assert created.name == "renamed-meanwhile" and created.external_gateway_info["network_id"] == ext.id
    state = wait_converged(cloud, fabric, project, ext_project)
    assert state[("router", router.id)]["name"] == "renamed-meanwhile"
    assert state[("router", router.id)]["external_network_id"] == ext.id
    cloud.network.delete_router(router)
    cloud.network.delete_network(ext)
    state = wait_converged(cloud, fabric, project, ext_project)
    assert ("router", router.id) not in state


def wait_for(probe: Callable[[], Any]) -> Any:
    end = time.monotonic() + DEADLINE
    while not (found := probe()):
        assert time.monotonic() < end, f"nothing after {DEADLINE:.0f} s: {probe}"
        time.sleep(0.05)
    return found


def waiting_for_ip(holder: sqlalchemy.Connection) -> bool:
    """Neutron's insert of the same IP is running in another connection (it waits for the holder's row)."""
    query = ("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
             "WHERE INFO LIKE 'INSERT INTO ipamallocations%' AND ID != CONNECTION_ID()")
    return bool(holder.execute(sqlalchemy.text(query)).scalar())


def test_a_port_that_only_looks_like_an_interface_is_no_interface_for_adopt_either(cloud, stack):
    """A process killed between Neutron creating an interface's port and linking it to the router (its
    ``routerports`` row) leaves a port that only looks like an interface; the L3 plugin records no interface
    for it, and neither must ``converge adopt`` / ``drift --neutron`` (seen in the chaos suite, where an
    API server is killed mid-request)."""
    project = "p-l3-orphan"
    net = cloud.network.create_network(**owned(project, name="orphan"))
    subnet = cloud.network.create_subnet(**owned(project, network_id=net.id, ip_version=4, cidr="10.77.0.0/24"))
    router = cloud.network.create_router(**owned(project, name="orphan-edge"))
    port = cloud.network.create_port(**owned(project, network_id=net.id, device_id=router.id,
                                             device_owner="network:router_interface",
                                             fixed_ips=[{"subnet_id": subnet.id}]))
    engine = db.make_engine(stack.db_url)
    try:
        def recorded() -> bool:
            with engine.connect() as conn:
                return conn.execute(sqlalchemy.select(desired.c.kind).where(desired.c.id == port.id)).all() \
                    == [("port",)]
        wait_for(recorded)
        found = adopt.neutron_intent(cloud, attached=adopt.attached_interfaces(engine))
        mine = {k: c for k, c in found.items() if c.root == project}
        changes, _ = adopt.differences(engine, mine)
        assert [c for c in changes if c.op.value != "delete"] == [], changes
        assert ("router_interface", port.id) not in found
        naive = adopt.neutron_intent(cloud)  # without Neutron's routerports: taken for an interface
        assert ("router_interface", port.id) in naive
    finally:
        engine.dispose()
        cloud.network.update_port(port, device_owner="", device_id="")  # an interface port cannot be deleted
        cloud.network.delete_port(port)
        cloud.network.delete_router(router)
        cloud.network.delete_subnet(subnet)
        cloud.network.delete_network(net)
