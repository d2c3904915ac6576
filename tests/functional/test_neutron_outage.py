"""The controller down for 30 s while 200 ports are created through the Neutron API: every call succeeds,
as fast as while it is up (the API path never touches the controller), the ports read
``converge:sync_state: pending``, and everything converges once the controller is back."""

from __future__ import annotations

import statistics
import time

import pytest
from neutron_support import MARKS, module_fabric  # noqa: F401 - the shared "fabric" fixture
from test_neutron_converge import DEADLINE, sync_states, wait_converged

from converge.testing.fabric import FabricProcess
from converge.testing.mariadb import MariaDB
from converge.testing.neutron import NeutronStack, owned

pytestmark = MARKS

OUTAGE = 30.0
PORTS_DURING_OUTAGE = 200


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, mariadb: MariaDB, fabric: FabricProcess):
    converge = {"controller_urls": fabric.url, "token": fabric.token, "sweep_interval": 2}
    with NeutronStack(tmp_path_factory.mktemp("neutron"), mariadb=mariadb, mechanism_drivers=["converge"],
                      config={"converge": converge},
                      ml2_config={"ml2": {"extension_drivers": "port_security,converge"}}) as stack:
        yield stack.connection()


def timed_port(cloud, project, network_id, name):
    began = time.monotonic()
    port = cloud.network.create_port(**owned(project, network_id=network_id, name=name))
    return port, time.monotonic() - began


def test_ports_created_while_the_controller_is_down_succeed_stay_pending_then_converge(cloud, fabric):
    project = "p-outage"
    net = cloud.network.create_network(**owned(project, name="outage"))
    cloud.network.create_subnet(**owned(project, network_id=net.id, cidr="10.8.0.0/22", ip_version=4))
    up = [timed_port(cloud, project, net.id, f"up-{i}")[1] for i in range(20)]
    wait_converged(cloud, fabric, project)

    fabric.stop()
    stopped = time.monotonic()
    down = []
    for i in range(PORTS_DURING_OUTAGE):
        _, seconds = timed_port(cloud, project, net.id, f"down-{i}")  # raises if any call fails
        down.append(seconds)
    states = sync_states(cloud, "ports", project)
    pending = [s for s, _ in states.values() if s == "pending"]
    assert len(pending) >= PORTS_DURING_OUTAGE, f"{len(pending)} pending of {len(states)}"
    # Same run, same machine: creating a port must not get slower because the controller is gone.
    print(f"\nport create median: {statistics.median(up) * 1000:.0f} ms with the controller up, "
          f"{statistics.median(down) * 1000:.0f} ms while it was down")
    assert statistics.median(down) < 2 * statistics.median(up)

    time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped)))
    fabric.start()  # same port, same database: the controller comes back
    state = wait_converged(cloud, fabric, project)
    assert sum(1 for k in state if k[0] == "port") == 20 + PORTS_DURING_OUTAGE
    end = time.monotonic() + DEADLINE
    while set(s for s, _ in sync_states(cloud, "ports", project).values()) != {"synced"}:
        assert time.monotonic() < end, "ports did not all read synced"
        time.sleep(0.5)
