"""Updates and deletes through the real Neutron API in the orders a user might pick — refused ones
included — for networks, subnets, ports (bound and unbound), security groups and their rules: after each
step the controller holds exactly what Neutron holds, and ``converge:sync_state`` reads ``synced``.

Neutron decides what an order means: a network or subnet still in use answers 409, a network deleted with
its subnets and DHCP port takes them along, a group deleted with its rules takes them along. Converge must
follow whatever Neutron did, whichever hook (or none) told it. One stack per module, configured as in
``test_neutron_converge.py``; each test owns its projects and CIDRs, so the tests do not see each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from neutron_support import (  # noqa: F401 - module_*: the shared fixtures
    MARKS,
    module_cloud,
    module_fabric,
    module_stack,
    wait_converged,
    wait_synced,
)
from openstack.exceptions import ConflictException

from converge.testing.fabric import FabricProcess
from converge.testing.neutron import owned

pytestmark = MARKS

RULE = {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp"}


def refused(call: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """Make a call Neutron must refuse with 409; the type of its error (``NetworkInUse``, ...)."""
    with pytest.raises(ConflictException) as caught:
        call(*args, **kwargs)
    assert caught.value.response is not None
    kind: str = caught.value.response.json()["NeutronError"]["type"]
    return kind


@contextlib.contextmanager
def failing(fabric: FabricProcess) -> Iterator[None]:
    """The controller answers every protocol call 503 before applying anything, until the block ends."""
    fabric.admin("PUT", "faults", {"error_rate": 1.0, "error_status": 503})
    try:
        yield
    finally:
        fabric.admin("PUT", "faults", {"error_rate": 0.0})


def kinds(state: dict[tuple[str, str], Any], *names: str) -> set[str]:
    return {oid for kind, oid in state if kind in names}


# -- networks ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dhcp_port", [pytest.param(False, id="user ports, subnet, network"),
                                       pytest.param(True, id="user ports, network with its subnet and DHCP port")])
def test_a_network_in_use_is_refused_then_deleted_in_an_order_neutron_allows(cloud, fabric, dhcp_port):
    n = 2 if dhcp_port else 1
    project = f"p-net-order-{n}"
    net = cloud.network.create_network(**owned(project, name="doomed"))
    sub = cloud.network.create_subnet(**owned(project, network_id=net.id, cidr=f"10.21.{n}.0/24", ip_version=4))
    vm = cloud.network.create_port(**owned(project, network_id=net.id, name="vm", binding_host_id="compute-1"))
    spare = cloud.network.create_port(**owned(project, network_id=net.id, name="spare"))
    if dhcp_port:  # an auto-delete owner: Neutron deletes it itself with the network
        cloud.network.create_port(**owned(project, network_id=net.id, name="dhcp", device_owner="network:dhcp"))
    state = wait_converged(cloud, fabric, project)
    assert {net.id, sub.id, vm.id, spare.id} <= kinds(state, "network", "subnet", "port")

    assert refused(cloud.network.delete_network, net) == "NetworkInUse"
    cloud.network.delete_port(vm)
    assert refused(cloud.network.delete_network, net) == "NetworkInUse"  # one user port is enough
    state = wait_converged(cloud, fabric, project)
    assert net.id in kinds(state, "network") and vm.id not in kinds(state, "port")

    cloud.network.delete_port(spare)
    wait_converged(cloud, fabric, project)
    if not dhcp_port:
        cloud.network.delete_subnet(sub)
        state = wait_converged(cloud, fabric, project)
        assert kinds(state, "subnet") == set() and net.id in kinds(state, "network")
        wait_synced(cloud, project)
    cloud.network.delete_network(net)
    state = wait_converged(cloud, fabric, project)
    assert kinds(state, "network", "subnet", "port") == set()
    wait_synced(cloud, project)


# -- ports ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("each", [pytest.param(True, id="converging after each update"),
                                  pytest.param(False, id="all updates at once")])
def test_a_port_updated_in_every_way_converges_to_each_state_then_goes(cloud, fabric, each):
    n = 1 if each else 2
    project = f"p-port-updates-{n}"
    net = cloud.network.create_network(**owned(project, name="ports"))
    cloud.network.create_subnet(**owned(project, network_id=net.id, cidr=f"10.22.{n}.0/24", ip_version=4))
    web = cloud.network.create_security_group(**owned(project, name="web"))
    ssh = cloud.network.create_security_group(**owned(project, name="ssh"))
    port = cloud.network.create_port(**owned(project, network_id=net.id, name="first"))
    updates: list[dict[str, Any]] = [
        {"name": "second"},
        {"is_admin_state_up": False},
        {"security_group_ids": [web.id, ssh.id]},
        {"allowed_address_pairs": [{"ip_address": f"10.22.{n}.200"}, {"ip_address": f"10.22.{n}.128/25"}]},
        {"binding_host_id": "compute-1"},  # bound
        {"binding_host_id": "compute-2"},  # moved
        {"security_group_ids": [ssh.id], "allowed_address_pairs": []},
        {"binding_host_id": ""},  # unbound
        {"is_admin_state_up": True, "name": "last", "description": "done"},
    ]
    for update in updates:
        cloud.network.update_port(port, **update)
        if each:
            wait_converged(cloud, fabric, project)
    state = wait_converged(cloud, fabric, project)
    attributes = state[("port", port.id)]
    assert attributes["name"] == "last" and attributes["admin_state_up"] is True
    assert attributes["security_groups"] == [ssh.id] and attributes["allowed_address_pairs"] == []
    assert not attributes.get("binding:host_id")
    wait_synced(cloud, project)

    cloud.network.delete_port(port)
    state = wait_converged(cloud, fabric, project)
    assert port.id not in kinds(state, "port")


@pytest.mark.parametrize("fail", [pytest.param(True, id="controller failing every call"),
                                  pytest.param(False, id="controller answering")])
def test_objects_created_and_deleted_before_a_push_never_stay_on_the_controller(cloud, fabric, fail):
    """Failing, the controller cannot take a create before its delete is recorded (the worker tries, and
    is refused); answering, the worker races the user and may push a create whose delete follows."""
    n = 1 if fail else 2
    project = f"p-quick-{n}"
    kept = cloud.network.create_network(**owned(project, name="kept"))
    wait_converged(cloud, fabric, project)
    with failing(fabric) if fail else contextlib.nullcontext():
        net = cloud.network.create_network(**owned(project, name="brief"))
        sub = cloud.network.create_subnet(**owned(project, network_id=net.id, cidr=f"10.23.{n}.0/24", ip_version=4))
        port = cloud.network.create_port(**owned(project, network_id=net.id, binding_host_id="compute-1"))
        group = cloud.network.create_security_group(**owned(project, name="brief"))
        rule = cloud.network.create_security_group_rule(**owned(project, security_group_id=group.id, **RULE))
        cloud.network.delete_port(port)
        cloud.network.delete_security_group(group)
        cloud.network.delete_network(net)
        cloud.network.update_network(kept, name="kept-renamed")
    state = wait_converged(cloud, fabric, project)
    gone = {net.id, sub.id, port.id, group.id, rule.id}
    assert not gone & {oid for _, oid in state}
    assert state[("network", kept.id)]["name"] == "kept-renamed"
    wait_synced(cloud, project)


# -- security groups -----------------------------------------------------------------------------------


def test_a_security_group_a_port_uses_is_refused_until_the_port_drops_it(cloud, fabric):
    project = "p-sg-in-use"
    net = cloud.network.create_network(**owned(project, name="sg"))
    cloud.network.create_subnet(**owned(project, network_id=net.id, cidr="10.24.0.0/24", ip_version=4))
    group = cloud.network.create_security_group(**owned(project, name="db"))
    rule = cloud.network.create_security_group_rule(**owned(
        project, security_group_id=group.id, direction="ingress", ethertype="IPv4", protocol="tcp",
        port_range_min=5432, port_range_max=5432, remote_ip_prefix="10.24.0.0/24"))
    port = cloud.network.create_port(**owned(project, network_id=net.id, name="db-1", binding_host_id="compute-1",
                                             security_group_ids=[group.id]))
    wait_converged(cloud, fabric, project)

    assert refused(cloud.network.delete_security_group, group) == "SecurityGroupInUse"
    state = wait_converged(cloud, fabric, project)
    assert {group.id, rule.id} <= kinds(state, "security_group", "security_group_rule")

    cloud.network.update_port(port, security_group_ids=[])
    state = wait_converged(cloud, fabric, project)
    assert state[("port", port.id)]["security_groups"] == []
    cloud.network.delete_security_group(group)
    state = wait_converged(cloud, fabric, project)
    assert not {group.id, rule.id} & kinds(state, "security_group", "security_group_rule")
    assert port.id in kinds(state, "port")
    wait_synced(cloud, project)


@pytest.mark.parametrize("rules_first", [pytest.param(True, id="rules, then their group"),
                                         pytest.param(False, id="the group with its rules")])
def test_security_group_rules_go_with_their_group_in_either_order(cloud, fabric, rules_first):
    project = f"p-sg-order-{1 if rules_first else 2}"
    group = cloud.network.create_security_group(**owned(project, name="app"))
    rules = [cloud.network.create_security_group_rule(**owned(project, security_group_id=group.id, **rule))
             for rule in (RULE | {"port_range_min": 80, "port_range_max": 80},
                          RULE | {"protocol": "icmp", "remote_ip_prefix": "192.0.2.0/24"},
                          RULE | {"remote_group_id": group.id})]  # one naming its own group, as default rules do
    state = wait_converged(cloud, fabric, project)
    assert {r.id for r in rules} <= kinds(state, "security_group_rule")

    if rules_first:
        for rule in rules:
            cloud.network.delete_security_group_rule(rule)
        state = wait_converged(cloud, fabric, project)
        assert group.id in kinds(state, "security_group")
        assert not {r.id for r in rules} & kinds(state, "security_group_rule")
    cloud.network.delete_security_group(group)
    state = wait_converged(cloud, fabric, project)
    assert not {group.id, *(r.id for r in rules)} & {oid for _, oid in state}
    wait_synced(cloud, project)


def test_deleting_a_group_takes_the_rules_of_other_groups_that_name_it(cloud, fabric):
    """The database cascades to rules naming the group as remote group, with no event of their own; left in
    intent, such a rule would keep the controller from deleting the group it names."""
    project = "p-sg-remote"
    group = cloud.network.create_security_group(**owned(project, name="app"))
    other = cloud.network.create_security_group(**owned(project, name="clients"))
    naming = cloud.network.create_security_group_rule(**owned(
        project, security_group_id=other.id, remote_group_id=group.id, **RULE))
    wait_converged(cloud, fabric, project)

    cloud.network.delete_security_group(group)
    assert naming.id not in {r.id for r in cloud.network.security_group_rules(security_group_id=other.id)}
    state = wait_converged(cloud, fabric, project)
    assert not {group.id, naming.id} & {oid for _, oid in state}
    assert other.id in kinds(state, "security_group")


# -- subnets -------------------------------------------------------------------------------------------


def test_a_subnet_updated_then_refused_while_a_port_holds_its_address_then_deleted(cloud, fabric):
    project = "p-subnet"
    net = cloud.network.create_network(**owned(project, name="two-subnets"))
    first = cloud.network.create_subnet(**owned(
        project, network_id=net.id, cidr="10.26.0.0/24", ip_version=4, name="first",
        allocation_pools=[{"start": "10.26.0.10", "end": "10.26.0.100"}]))
    second = cloud.network.create_subnet(**owned(project, network_id=net.id, cidr="10.26.1.0/24", ip_version=4))
    port = cloud.network.create_port(**owned(project, network_id=net.id, binding_host_id="compute-1",
                                             fixed_ips=[{"subnet_id": first.id}, {"subnet_id": second.id}]))
    wait_converged(cloud, fabric, project)

    cloud.network.update_subnet(first, name="renamed", gateway_ip="10.26.0.254",
                                allocation_pools=[{"start": "10.26.0.10", "end": "10.26.0.200"}])
    state = wait_converged(cloud, fabric, project)
    assert state[("subnet", first.id)]["gateway_ip"] == "10.26.0.254"
    assert state[("subnet", first.id)]["allocation_pools"] == [{"start": "10.26.0.10", "end": "10.26.0.200"}]

    assert refused(cloud.network.delete_subnet, first) == "SubnetInUse"
    wait_converged(cloud, fabric, project)
    kept = [ip for ip in cloud.network.get_port(port.id).fixed_ips if ip["subnet_id"] == second.id]
    cloud.network.update_port(port, fixed_ips=kept)
    state = wait_converged(cloud, fabric, project)
    assert [ip["subnet_id"] for ip in state[("port", port.id)]["fixed_ips"]] == [second.id]
    cloud.network.delete_subnet(first)
    state = wait_converged(cloud, fabric, project)
    assert kinds(state, "subnet") == {second.id} and port.id in kinds(state, "port")
    wait_synced(cloud, project)


@pytest.mark.parametrize("slaac", [pytest.param(False, id="DHCP port, IPv4 subnet"),
                                   pytest.param(True, id="user port, IPv6 SLAAC subnet")])
def test_deleting_a_subnet_strips_its_address_from_the_ports_neutron_allows(cloud, fabric, slaac):
    """Neutron removes the subnet's IP allocations from those ports straight in the database, with no port
    hook and no revision bump (see ``converge.neutron.subnets``)."""
    n = 2 if slaac else 1
    project = f"p-stripped-{n}"
    net = cloud.network.create_network(**owned(project, name="stripped"))
    kept = cloud.network.create_subnet(**owned(project, network_id=net.id, cidr=f"10.27.{n}.0/24", ip_version=4))
    if not slaac:
        doomed = cloud.network.create_subnet(**owned(project, network_id=net.id, cidr=f"10.28.{n}.0/24",
                                                     ip_version=4))
        port = cloud.network.create_port(**owned(project, network_id=net.id, device_owner="network:dhcp",
                                                 fixed_ips=[{"subnet_id": kept.id}, {"subnet_id": doomed.id}]))
    else:
        doomed = cloud.network.create_subnet(**owned(project, network_id=net.id, cidr=f"fd00:27:{n}::/64",
                                                     ip_version=6, ipv6_ra_mode="slaac",
                                                     ipv6_address_mode="slaac"))
        port = cloud.network.create_port(**owned(project, network_id=net.id))
    # Unbound ports: a bound one turns ACTIVE when the controller reports it up, and that status update
    # records the port again (with what Neutron holds then), which could hide the stale address by chance.
    state = wait_converged(cloud, fabric, project)
    assert {ip["subnet_id"] for ip in state[("port", port.id)]["fixed_ips"]} == {kept.id, doomed.id}

    cloud.network.delete_subnet(doomed)  # allowed: Neutron strips the address from the port itself
    assert [ip["subnet_id"] for ip in cloud.network.get_port(port.id).fixed_ips] == [kept.id]
    state = wait_converged(cloud, fabric, project)
    assert [ip["subnet_id"] for ip in state[("port", port.id)]["fixed_ips"]] == [kept.id]


def test_a_new_auto_address_subnet_adds_its_address_to_the_ports_of_its_network(cloud, fabric):
    """Neutron adds the address in a transaction of its own, with no port hook, then calls ``update_port``
    with nothing to change so that drivers hear of it: that update must record the port."""
    project = "p-slaac-added"
    net = cloud.network.create_network(**owned(project, name="dual-stack"))
    v4 = cloud.network.create_subnet(**owned(project, network_id=net.id, cidr="10.29.0.0/24", ip_version=4))
    port = cloud.network.create_port(**owned(project, network_id=net.id, name="vm"))
    wait_converged(cloud, fabric, project)

    v6 = cloud.network.create_subnet(**owned(project, network_id=net.id, cidr="fd00:29::/64", ip_version=6,
                                             ipv6_ra_mode="slaac", ipv6_address_mode="slaac"))
    assert {ip["subnet_id"] for ip in cloud.network.get_port(port.id).fixed_ips} == {v4.id, v6.id}
    state = wait_converged(cloud, fabric, project)
    assert {ip["subnet_id"] for ip in state[("port", port.id)]["fixed_ips"]} == {v4.id, v6.id}


# -- projects ------------------------------------------------------------------------------------------


def test_changes_interleaved_across_two_projects_converge_in_each(cloud, fabric):
    """Project "left" shares its network; "right" puts a port on it, so a reference crosses roots and the
    deletes must wait for each other across them."""
    left, right = "p-left", "p-right"
    shared = cloud.network.create_network(**owned(left, name="shared", is_shared=True))
    own = cloud.network.create_network(**owned(right, name="own"))
    shared_sub = cloud.network.create_subnet(**owned(left, network_id=shared.id, cidr="10.29.0.0/24",
                                                     ip_version=4))
    own_sub = cloud.network.create_subnet(**owned(right, network_id=own.id, cidr="10.29.1.0/24", ip_version=4))
    left_port = cloud.network.create_port(**owned(left, network_id=shared.id, binding_host_id="compute-1"))
    group = cloud.network.create_security_group(**owned(right, name="right-web"))
    guest = cloud.network.create_port(**owned(right, network_id=shared.id, name="guest", security_group_ids=[group.id]))
    right_port = cloud.network.create_port(**owned(right, network_id=own.id, binding_host_id="compute-2"))
    rule = cloud.network.create_security_group_rule(**owned(
        right, security_group_id=group.id, direction="egress", ethertype="IPv4", protocol="tcp"))
    state = wait_converged(cloud, fabric, left, right)
    assert state[("port", guest.id)]["network_id"] == shared.id
    wait_synced(cloud, left)
    wait_synced(cloud, right)

    cloud.network.update_network(shared, name="shared-renamed")
    cloud.network.update_port(guest, name="guest-renamed", binding_host_id="compute-3")
    cloud.network.delete_security_group_rule(rule)
    cloud.network.update_subnet(shared_sub, name="left-sub")
    cloud.network.delete_port(right_port)
    cloud.network.update_port(left_port, is_admin_state_up=False)
    wait_converged(cloud, fabric, left, right)

    cloud.network.delete_port(guest)  # the last port of "right" on the network of "left"
    cloud.network.delete_port(left_port)
    cloud.network.delete_security_group(group)
    cloud.network.delete_network(shared)  # with its subnet, at once after the port of the other root
    cloud.network.delete_subnet(own_sub)
    state = wait_converged(cloud, fabric, left, right)
    assert kinds(state, "network") == {own.id} and kinds(state, "subnet", "port") == set()
    cloud.network.delete_network(own)
    state = wait_converged(cloud, fabric, left, right)
    assert kinds(state, "network", "subnet", "port") == set()
    wait_synced(cloud, left)
    wait_synced(cloud, right)
