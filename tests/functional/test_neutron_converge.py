"""Converge loaded by the real Neutron API (uWSGI, ML2, noauth) and driven through openstacksdk like a
cloud user: the controller converges to exactly Neutron's state, and ``converge:sync_state`` says so.

One stack per module: MariaDB, ``neutron-db-manage upgrade heads`` (Converge's branch included), the API
with ``mechanism_drivers = converge`` and ``extension_drivers = port_security,converge``, and
``neutron-periodic-workers`` running Converge's sync worker against a fabric controller process.
"""

from __future__ import annotations

import time

from neutron_support import (  # noqa: F401 - module_*: the shared fixtures
    COLLECTIONS,
    DEADLINE,
    MARKS,
    controller_state,
    module_cloud,
    module_fabric,
    module_stack,
    sync_states,
    wait_converged,
)

from converge.testing.neutron import owned

pytestmark = MARKS
__all__ = ["COLLECTIONS", "DEADLINE", "sync_states", "wait_converged"]  # still imported from here by other modules


def test_networks_subnets_ports_and_security_groups_converge_and_read_synced(cloud, fabric):
    project = "p-basic"
    net = cloud.network.create_network(**owned(project, name="blue"))
    sub = cloud.network.create_subnet(**owned(project, network_id=net.id, cidr="10.1.0.0/24", ip_version=4))
    bound = cloud.network.create_port(**owned(project, network_id=net.id, name="vm-1",
                                              binding_host_id="compute-1"))
    unbound = cloud.network.create_port(**owned(project, network_id=net.id, name="spare"))
    group = cloud.network.create_security_group(**owned(project, name="web"))
    rule = cloud.network.create_security_group_rule(**owned(
        project, security_group_id=group.id, direction="ingress", ethertype="IPv4", protocol="tcp",
        port_range_min=443, port_range_max=443, remote_ip_prefix="0.0.0.0/0"))
    cloud.network.update_port(bound, name="vm-1-renamed", security_group_ids=[group.id])
    cloud.network.update_network(net, description="updated")

    state = wait_converged(cloud, fabric, project)
    assert {("network", net.id), ("subnet", sub.id), ("port", bound.id), ("port", unbound.id),
            ("security_group", group.id), ("security_group_rule", rule.id)} <= set(state)
    assert cloud.network.get_port(bound.id).binding_vif_type == "ovs"  # bound by converge
    assert state[("port", bound.id)]["binding:host_id"]  # its host travels (not how the host plugs it)
    assert not state[("port", unbound.id)].get("binding:host_id")  # and unbound ports travel too
    assert state[("port", bound.id)]["security_groups"] == [group.id]
    for collection in ("networks", "subnets", "ports", "security_groups"):
        assert set(v[0] for v in sync_states(cloud, collection, project).values()) == {"synced"}, collection

    cloud.network.delete_security_group_rule(rule)
    cloud.network.delete_port(unbound)
    cloud.network.update_port(bound, security_group_ids=[])
    cloud.network.delete_security_group(group)
    state = wait_converged(cloud, fabric, project)
    assert ("security_group", group.id) not in state and ("port", unbound.id) not in state

    cloud.network.delete_port(bound)
    cloud.network.delete_subnet(sub)
    cloud.network.delete_network(net)
    state = wait_converged(cloud, fabric, project)
    assert not [k for k in state if k[0] in ("network", "subnet", "port")]


def test_an_object_the_controller_refuses_shows_error_with_its_message_while_the_rest_syncs(cloud, fabric):
    project = "p-refused"
    fabric.admin("PUT", "/v1/admin/faults", {"reject_name_pattern": "^forbidden"})
    try:
        good = cloud.network.create_network(**owned(project, name="fine"))
        bad = cloud.network.create_network(**owned(project, name="forbidden-net"))
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            states = sync_states(cloud, "networks", project)
            if states.get(bad.id, ("",))[0] == "error" and states.get(good.id, ("",))[0] == "synced":
                break
            time.sleep(0.2)
        assert states[good.id] == ("synced", None)
        state, message = states[bad.id]
        assert state == "error" and message and "forbidden-net" in message
        assert ("network", bad.id) not in controller_state(fabric, project)
    finally:
        fabric.admin("PUT", "/v1/admin/faults", {"reject_name_pattern": None})
    cloud.network.update_network(bad, name="allowed-now")  # a new desired state is tried again
    wait_converged(cloud, fabric, project)
    assert sync_states(cloud, "networks", project)[bad.id] == ("synced", None)


def test_a_bound_port_turns_active_only_when_the_controller_reports_it_up(cloud, fabric):
    project = "p-status"
    net = cloud.network.create_network(**owned(project, name="status"))
    cloud.network.create_subnet(**owned(project, network_id=net.id, cidr="10.2.0.0/24", ip_version=4))
    bound = cloud.network.create_port(**owned(project, network_id=net.id, binding_host_id="compute-1"))
    unbound = cloud.network.create_port(**owned(project, network_id=net.id))
    later = cloud.network.create_port(**owned(project, network_id=net.id))

    def status(port):
        return cloud.network.get_port(port.id).status

    end = time.monotonic() + DEADLINE
    while status(bound) != "ACTIVE" and time.monotonic() < end:
        time.sleep(0.2)
    assert status(bound) == "ACTIVE"
    assert fabric.get(f"/v1/roots/{project}/objects/port/{bound.id}")["status"] == "up"
    wait_converged(cloud, fabric, project)
    assert status(unbound) == "DOWN"  # nobody wired it: Neutron must not claim it is up

    cloud.network.update_port(later, binding_host_id="compute-2")  # bound after it reached the controller
    end = time.monotonic() + DEADLINE
    while status(later) != "ACTIVE" and time.monotonic() < end:
        time.sleep(0.2)
    assert status(later) == "ACTIVE"
