"""The Neutron harness, driven like a cloud user: openstacksdk against the real API under uWSGI.

One stack per module (ML2 with the stock ``logger`` mechanism driver, which only logs, and the ``router``
L3 service plugin) on the session's MariaDB. Timings go to stdout (``pytest -s``) as ``harness timing``.
"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from neutron_support import MARKS

# No skips: scripts/setup installs Neutron, openstacksdk and uWSGI, so their absence is a failure to see.
from openstack import exceptions  # noqa: E402
from openstack.connection import Connection  # noqa: E402

from converge.testing.mariadb import MariaDB
from converge.testing.neutron import NeutronStack, NeutronStartError, owned  # noqa: E402

pytestmark = MARKS

PROJECT = "p-harness"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mariadb: MariaDB) -> Iterator[NeutronStack]:
    began = time.monotonic()
    with NeutronStack(tmp_path_factory.mktemp("neutron"), mariadb=mariadb, service_plugins=["router"]) as stack:
        steps = ", ".join(f"{step} {seconds:.2f} s" for step, seconds in stack.timings.items())
        print(f"\nharness timing: stack up in {time.monotonic() - began:.2f} s ({steps})")
        yield stack
        began = time.monotonic()
    print(f"\nharness timing: stack down in {time.monotonic() - began:.2f} s")


@pytest.fixture(scope="module")
def cloud(stack: NeutronStack) -> Connection:
    return stack.connection()


def test_the_stack_is_up_with_its_config_and_both_services(stack: NeutronStack) -> None:
    assert stack.running() == {"api": True, "periodic": True}
    assert [path.name for path in stack.config_files] == ["neutron.conf", "ml2_conf.ini"]
    conf = stack.neutron_conf.read_text()
    assert "auth_strategy = noauth" in conf and "service_plugins = router" in conf
    assert stack.db_url.startswith("mysql+pymysql://") and stack.db_url.endswith("?charset=utf8mb4")
    aliases = {e["alias"] for e in httpx.get(f"{stack.url}/v2.0/extensions").json()["extensions"]}
    assert {"router", "port-security", "binding"} <= aliases
    assert "Loaded mechanism driver names: ['logger']" in stack.api_log_tail(100_000)


def test_network_subnet_and_port_are_created_listed_and_deleted(cloud: Connection) -> None:
    net = cloud.network.create_network(**owned(PROJECT, name="blue"))
    assert (net.status, net.project_id, net.is_admin_state_up) == ("ACTIVE", PROJECT, True)
    assert net.provider_network_type == "vxlan" and 1 <= net.provider_segmentation_id <= 1000
    assert net.is_port_security_enabled is True and net.mtu == 1450

    subnet = cloud.network.create_subnet(**owned(PROJECT, network_id=net.id, cidr="10.10.0.0/24", ip_version=4))
    assert (subnet.gateway_ip, subnet.project_id) == ("10.10.0.1", PROJECT)
    assert subnet.allocation_pools == [{"start": "10.10.0.2", "end": "10.10.0.254"}]

    port = cloud.network.create_port(**owned(PROJECT, network_id=net.id, name="vm-1"))
    # No mechanism driver binds it (no host either): the port stays DOWN and unbound, as with any real
    # driver before Nova binds it.
    assert (port.status, port.binding_vif_type, port.project_id) == ("DOWN", "unbound", PROJECT)
    assert port.mac_address.startswith("fa:16:3e:")
    [fixed_ip] = port.fixed_ips
    assert fixed_ip["subnet_id"] == subnet.id and fixed_ip["ip_address"].startswith("10.10.0.")

    assert [p.id for p in cloud.network.ports(network_id=net.id, device_owner="")] == [port.id]
    assert [n.id for n in cloud.network.networks(project_id=PROJECT, name="blue")] == [net.id]

    cloud.network.delete_port(port)
    cloud.network.delete_subnet(subnet)
    cloud.network.delete_network(net)
    gone = [(cloud.network.get_port, port.id), (cloud.network.get_subnet, subnet.id),
            (cloud.network.get_network, net.id)]
    for get, oid in gone:
        with pytest.raises(exceptions.NotFoundException):
            get(oid)


def test_a_router_gets_an_interface_on_a_subnet(cloud: Connection) -> None:
    net = cloud.network.create_network(**owned(PROJECT, name="red"))
    subnet = cloud.network.create_subnet(**owned(PROJECT, network_id=net.id, cidr="10.20.0.0/24", ip_version=4))
    router = cloud.network.create_router(**owned(PROJECT, name="r1"))
    assert (router.status, router.project_id) == ("ACTIVE", PROJECT)

    interface = cloud.network.add_interface_to_router(router, subnet=subnet.id)
    assert interface["subnet_ids"] == [subnet.id]
    port = cloud.network.get_port(interface["port_id"])
    assert (port.device_owner, port.device_id) == ("network:router_interface", router.id)
    assert port.fixed_ips == [{"subnet_id": subnet.id, "ip_address": "10.20.0.1"}]

    cloud.network.remove_interface_from_router(router, subnet=subnet.id)
    cloud.network.delete_router(router)
    cloud.network.delete_subnet(subnet)
    cloud.network.delete_network(net)
    assert list(cloud.network.ports(network_id=net.id)) == []


def test_port_create_latency(cloud: Connection) -> None:
    net = cloud.network.create_network(**owned(PROJECT, name="latency"))
    cloud.network.create_subnet(**owned(PROJECT, network_id=net.id, cidr="10.30.0.0/24", ip_version=4))
    seconds = []
    for i in range(10):
        began = time.monotonic()
        cloud.network.create_port(**owned(PROJECT, network_id=net.id, name=f"p{i}"))
        seconds.append(time.monotonic() - began)
    print(f"\nharness timing: port create median {statistics.median(seconds):.3f} s, max {max(seconds):.3f} s")
    assert statistics.median(seconds) < 2.0


def test_without_project_id_noauth_puts_the_resource_in_fake_project_id(cloud: Connection) -> None:
    net = cloud.network.create_network(name="nobody's")
    assert net.project_id == "fake_project_id"
    cloud.network.delete_network(net)


def test_restart_api_comes_back_on_the_same_url_and_data(stack: NeutronStack, cloud: Connection) -> None:
    net = cloud.network.create_network(**owned(PROJECT, name="survivor"))
    url, began = stack.url, time.monotonic()
    stack.restart_api()
    print(f"\nharness timing: restart_api {time.monotonic() - began:.2f} s")
    assert stack.url == url and stack.running()["api"]
    assert cloud.network.get_network(net.id).name == "survivor"


def test_a_failed_start_raises_with_the_log_tail_and_stops_everything(tmp_path: Path) -> None:
    """On its own MariaDB: the failure path must stop that too."""
    stack = NeutronStack(tmp_path, mechanism_drivers=["no-such-driver"], processes=1, periodic_workers=False)
    with pytest.raises(NeutronStartError, match="no-such-driver"):
        stack.start()
    assert stack.running() == {"api": False, "periodic": False} and stack.mariadb.process is None
    for port in (stack.port, stack.mariadb.port):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listening"
