"""Neutron's API → Converge → OVN, proven with packets: network namespaces plugged into a userspace-datapath
chassis ping through what Neutron's API created (docs/design/ovn.md; the harness: converge.testing.ovn).

One stack for the module: MariaDB, Neutron under uWSGI with ``converge`` + ``converge_router`` and
``[converge] backend = ovn``, its periodic sync worker, OVN (NB, SB, northd) and one chassis whose
hostname is the binding host of every port, so ``options:requested-chassis`` lets ``ovn-controller``
claim them and ports turn ACTIVE through the provisioning block.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
from neutron_support import MARKS, sync_states
from openstack.connection import Connection

from converge.testing.mariadb import MariaDB
from converge.testing.neutron import NeutronStack, owned
from converge.testing.ovn import OvnControlPlane, OvnDataplane, Vm

pytestmark = [*MARKS, pytest.mark.ovn]

PROJECT = "ovn-project"
DEADLINE = 60.0
_macs = itertools.count(1)


@pytest.fixture(scope="module")
def ovn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OvnControlPlane]:
    with OvnControlPlane(tmp_path_factory.mktemp("ovn")) as control:
        yield control


@pytest.fixture(scope="module")
def chassis(ovn: OvnControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OvnDataplane]:
    with OvnDataplane(ovn, tmp_path_factory.mktemp("chassis"), hostname="compute-ovn-1") as dataplane:
        yield dataplane


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mariadb: MariaDB, ovn: OvnControlPlane,
          chassis: OvnDataplane) -> Iterator[NeutronStack]:
    converge = {"backend": "ovn", "ovn_nb_connection": ovn.nb_tcp, "ovn_gateway_chassis": chassis.chassis,
                "ovn_timeout": 5, "sweep_interval": 2, "poll_interval": 0.05}
    with NeutronStack(tmp_path_factory.mktemp("neutron"), mariadb=mariadb, mechanism_drivers=["converge"],
                      service_plugins=["converge_router"], tenant_network_type="geneve",
                      config={"converge": converge},
                      ml2_config={"ml2": {"extension_drivers": "port_security,converge"}}) as neutron:
        yield neutron


@pytest.fixture(scope="module")
def cloud(stack: NeutronStack) -> Connection:
    return stack.connection()


def eventually(probe: Any, what: str, deadline: float = DEADLINE) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        result = probe()
        if result:
            return result
        time.sleep(0.1)
    pytest.fail(f"timed out after {deadline:.0f} s waiting for {what}")


def mac() -> str:
    n = next(_macs)
    return f"fa:16:3e:aa:{n >> 8:02x}:{n & 0xff:02x}"


def network(cloud: Connection, name: str, cidr: str, **extra: Any) -> tuple[Any, Any]:
    net = cloud.network.create_network(**owned(PROJECT, name=name, **extra))
    sub = cloud.network.create_subnet(**owned(PROJECT, network_id=net.id, ip_version=4, cidr=cidr,
                                            name=f"{name}-sub"))
    return net, sub


def vm(cloud: Connection, chassis: OvnDataplane, net: Any, sub: Any, name: str, *, ip: str | None = None,
       groups: list[str] | None = None, gateway: bool = True, **extra: Any) -> tuple[Any, Vm]:
    """A port bound to the chassis' host, and a namespace plugged in as that port."""
    fixed = {"subnet_id": sub.id, **({"ip_address": ip} if ip else {})}
    attributes: dict[str, Any] = {"network_id": net.id, "name": name, "mac_address": mac(), "fixed_ips": [fixed],
                                  "binding_host_id": chassis.hostname, "device_owner": "compute:nova",
                                  "device_id": f"vm-{name}", **extra}
    if groups is not None:
        attributes["security_group_ids"] = groups
    port = cloud.network.create_port(**owned(PROJECT, **attributes))
    prefix = sub.cidr.split("/")[1]
    namespace = chassis.add_vm(name, port.id, port.mac_address, f"{port.fixed_ips[0]['ip_address']}/{prefix}",
                               gateway=sub.gateway_ip if gateway else None)
    return port, namespace


def active(cloud: Connection, port_id: str) -> bool:
    return bool(cloud.network.get_port(port_id).status == "ACTIVE")


def test_two_ports_on_one_network_ping_and_turn_active(cloud: Connection, chassis: OvnDataplane) -> None:
    net, sub = network(cloud, "flat-a", "10.20.0.0/24")
    p1, vm1 = vm(cloud, chassis, net, sub, "a1")
    p2, vm2 = vm(cloud, chassis, net, sub, "a2")
    assert vm1.wait_ping(vm2.ip, timeout=DEADLINE), "a1 cannot reach a2 on one network"
    assert vm2.wait_ping(vm1.ip, timeout=DEADLINE)
    eventually(lambda: active(cloud, p1.id) and active(cloud, p2.id), "both ports ACTIVE")


def test_two_networks_through_a_router(cloud: Connection, chassis: OvnDataplane) -> None:
    left, left_sub = network(cloud, "left", "10.21.1.0/24")
    right, right_sub = network(cloud, "right", "10.21.2.0/24")
    router = cloud.network.create_router(**owned(PROJECT, name="r-lr"))
    cloud.network.add_interface_to_router(router, subnet_id=left_sub.id)
    cloud.network.add_interface_to_router(router, subnet_id=right_sub.id)
    _, vm1 = vm(cloud, chassis, left, left_sub, "b1")
    _, vm2 = vm(cloud, chassis, right, right_sub, "b2")
    assert vm1.wait_ping(vm2.ip, timeout=DEADLINE), "no route between the two networks"


def test_floating_ip_reachable_from_outside_and_snat(cloud: Connection, chassis: OvnDataplane) -> None:
    public = cloud.network.create_network(**owned(PROJECT, name="public", is_router_external=True))
    public_sub = cloud.network.create_subnet(**owned(PROJECT, network_id=public.id, ip_version=4,
                                                     cidr="172.24.40.0/24", gateway_ip="172.24.40.1",
                                                     enable_dhcp=False))
    inside, inside_sub = network(cloud, "inside", "10.22.0.0/24")
    router = cloud.network.create_router(**owned(PROJECT, name="r-gw",
                                                 external_gateway_info={"network_id": public.id}))
    cloud.network.add_interface_to_router(router, subnet_id=inside_sub.id)
    # the "outside world": a host on the external network with no route to the tenant's addresses
    _, outside = vm(cloud, chassis, public, public_sub, "ext", ip="172.24.40.100", gateway=False,
                    port_security_enabled=False)
    server, vm_server = vm(cloud, chassis, inside, inside_sub, "srv")
    _, vm_client = vm(cloud, chassis, inside, inside_sub, "cli")
    fip = cloud.network.create_ip(**owned(PROJECT, floating_network_id=public.id, port_id=server.id))
    default = next(cloud.network.security_groups(project_id=PROJECT, name="default"))
    cloud.network.create_security_group_rule(**owned(PROJECT, security_group_id=default.id, direction="ingress",
                                                     ethertype="IPv4", protocol="icmp"))
    assert outside.wait_ping(fip.floating_ip_address, timeout=DEADLINE), "floating IP not reachable from outside"
    # SNAT: the client has no floating IP; the outside host answers the router's gateway address
    assert vm_client.wait_ping(outside.ip, timeout=DEADLINE), "no SNAT to the external network"


def test_a_security_group_drops_until_a_rule_allows(cloud: Connection, chassis: OvnDataplane) -> None:
    net, sub = network(cloud, "guarded", "10.23.0.0/24")
    closed = cloud.network.create_security_group(**owned(PROJECT, name="closed"))
    for rule in list(cloud.network.security_group_rules(security_group_id=closed.id)):
        if rule.direction == "ingress":
            cloud.network.delete_security_group_rule(rule)
    _, client = vm(cloud, chassis, net, sub, "g1")
    server_port, server = vm(cloud, chassis, net, sub, "g2", groups=[closed.id])
    eventually(lambda: active(cloud, server_port.id), "the guarded port ACTIVE")
    assert not client.wait_ping(server.ip, timeout=3), "ping passed a group with no ingress rule"
    cloud.network.create_security_group_rule(**owned(PROJECT, security_group_id=closed.id, direction="ingress",
                                                     ethertype="IPv4", protocol="icmp"))
    assert client.wait_ping(server.ip, timeout=DEADLINE), "the new rule did not let ping through"


def test_port_security_drops_a_spoofed_source(cloud: Connection, chassis: OvnDataplane) -> None:
    net, sub = network(cloud, "spoof", "10.24.0.0/24")
    default = next(cloud.network.security_groups(project_id=PROJECT, name="default"))
    _, honest = vm(cloud, chassis, net, sub, "s1", groups=[default.id])
    _, target = vm(cloud, chassis, net, sub, "s2", groups=[default.id])
    assert honest.wait_ping(target.ip, timeout=DEADLINE)
    honest.exec("ip", "addr", "add", "10.24.0.250/24", "dev", "eth0")
    spoofed = honest.exec("ping", "-c", "3", "-W", "1", "-I", "10.24.0.250", target.ip, check=False)
    assert spoofed.returncode != 0, "a spoofed source address got through port security"
    assert honest.ping(target.ip, count=2, timeout=2), "the port's own address stopped working"


def test_out_of_band_deletions_in_nb_are_restored(cloud: Connection, chassis: OvnDataplane,
                                                  ovn: OvnControlPlane) -> None:
    net, sub = network(cloud, "healed", "10.25.0.0/24")
    p1, vm1 = vm(cloud, chassis, net, sub, "h1")
    _, vm2 = vm(cloud, chassis, net, sub, "h2")
    assert vm1.wait_ping(vm2.ip, timeout=DEADLINE)
    began = time.monotonic()
    ovn.nbctl("lsp-del", p1.id)
    eventually(lambda: p1.id in ovn.nbctl("--bare", "--columns=name", "list", "Logical_Switch_Port").split(),
               "the deleted logical port restored")
    restored = time.monotonic() - began
    assert vm1.wait_ping(vm2.ip, timeout=DEADLINE), "ping did not come back after the port was restored"
    default = next(cloud.network.security_groups(project_id=PROJECT, name="default"))
    pg = f"pg_{default.id.replace('-', '_')}"
    acls = ovn.nbctl("--bare", "--columns=acls", "list", "Port_Group", pg).split()
    ovn.nbctl("remove", "Port_Group", pg, "acls", *acls)
    eventually(lambda: len(ovn.nbctl("--bare", "--columns=acls", "list", "Port_Group", pg).split()) == len(acls),
               "the deleted ACLs restored")
    assert vm1.wait_ping(vm2.ip, timeout=DEADLINE)
    print(f"out-of-band lsp-del restored in {restored:.3f} s")


def test_nb_down_30_s_while_200_ports_are_created_every_call_succeeds_as_fast_then_all_converge(
        cloud: Connection, ovn: OvnControlPlane) -> None:
    """Last in the module: it stops NB. ML2/OVN hangs every API call while NB is down; here the API path
    never touches NB, the ports read pending, and NB receives all of them once it is back."""
    project = "p-nb-outage"
    net = cloud.network.create_network(**owned(project, name="outage"))
    cloud.network.create_subnet(**owned(project, network_id=net.id, cidr="10.30.0.0/22", ip_version=4))

    def timed(name: str) -> tuple[Any, float]:
        began = time.monotonic()
        port = cloud.network.create_port(**owned(project, network_id=net.id, name=name))
        return port, time.monotonic() - began

    up = [timed(f"up-{i}")[1] for i in range(20)]
    ovn.stop_nb()
    stopped = time.monotonic()
    made, down = [], []
    for i in range(200):
        port, seconds = timed(f"down-{i}")  # raises if any call fails
        made.append(port.id)
        down.append(seconds)
    states = sync_states(cloud, "ports", project)
    assert sum(1 for s, _ in states.values() if s == "pending") >= 200, states
    print(f"\nport create median: {statistics.median(up) * 1000:.0f} ms with NB up, "
          f"{statistics.median(down) * 1000:.0f} ms while NB was down")
    assert statistics.median(down) < 2 * statistics.median(up)  # same run: not slower because NB is gone
    time.sleep(max(0.0, 30.0 - (time.monotonic() - stopped)))
    ovn.start_nb()
    eventually(lambda: set(made) <= set(ovn.nbctl("--bare", "--columns=name", "list",
                                                  "Logical_Switch_Port").split()), "all 200 ports in NB")
    eventually(lambda: {s for s, _ in sync_states(cloud, "ports", project).values()} == {"synced"},
               "every port synced")
