"""A burst of bound ports through the real Neutron API all turns ACTIVE (converge/neutron/port_status.py).

The controller (its own here: ports go up 2 s after they arrive, by then the bulk create has bound them
all) reports the ports of a bulk create up within a few milliseconds of each other, so the sync worker's
listener completes them together, in one ML2 bulk status update (its log says so): each must still end
ACTIVE with its revision moved past the one its create answered (Neutron's own update, not a raw status
write), and the controller must say it is up. A second burst from four clients at once checks the same.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from neutron_support import (  # noqa: F401 - module_*: the shared fixtures
    DEADLINE,
    MARKS,
    POLL,
    module_cloud,
    module_stack,
)

from converge.testing.fabric import FabricProcess
from converge.testing.neutron import NeutronStack, owned

pytestmark = MARKS
BULK = re.compile(r"ports reported up: (\d+) turned ACTIVE in one bulk status update")


@pytest.fixture(scope="module", name="fabric")
def slow_fabric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FabricProcess]:
    """Ports go up 2 s after they reach the controller: after the bulk create that made them bound them."""
    with FabricProcess(tmp_path_factory.mktemp("fabric"), faults=False, port_up_delay=2.0) as process:
        yield process


def bulk_updates(stack: NeutronStack) -> list[int]:
    """How many ports each bulk status update of the sync worker turned ACTIVE, from its log."""
    return [int(n) for n in BULK.findall(stack.periodic_log.read_text(errors="replace"))]


def wait_active(cloud: Any, project: str, ports: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Until every port of ``ports`` (id -> revision at create) is ACTIVE, or the deadline; the listing."""
    end = time.monotonic() + DEADLINE
    while True:
        listed = {p["id"]: p for p in cloud.network.get("/ports", params={"project_id": project}).json()["ports"]}
        if all(listed.get(i, {}).get("status") == "ACTIVE" for i in ports) or time.monotonic() > end:
            return listed
        time.sleep(POLL)


def check(cloud: Any, fabric: Any, project: str, ports: dict[str, int]) -> None:
    listed = wait_active(cloud, project, ports)
    down = sorted(i for i in ports if listed[i]["status"] != "ACTIVE")
    assert not down, f"{len(down)} of {len(ports)} ports not ACTIVE after {DEADLINE:.0f} s: {down[:5]}"
    stale = sorted(i for i, revision in ports.items() if listed[i]["revision_number"] <= revision)
    assert not stale, f"ACTIVE without Neutron's update (revision not bumped): {stale[:5]}"
    assert all(fabric.get(f"/v1/roots/{project}/objects/port/{i}")["status"] == "up" for i in ports)


def test_a_bulk_create_of_bound_ports_all_turns_active_through_neutrons_update(cloud, stack, fabric):
    project = "p-burst"
    net = cloud.network.create_network(**owned(project, name="burst"))
    cloud.network.create_subnet(**owned(project, network_id=net.id, cidr="10.3.0.0/24", ip_version=4))
    answer = cloud.network.post("/ports", json={"ports": [
        owned(project, network_id=net.id, name=f"b{n}", **{"binding:host_id": "compute-1"}) for n in range(40)]})
    assert answer.status_code == 201, answer.text
    check(cloud, fabric, project, {p["id"]: p["revision_number"] for p in answer.json()["ports"]})
    assert max(bulk_updates(stack), default=0) > 1, bulk_updates(stack)  # together, not one by one


def test_ports_created_by_four_clients_at_once_all_turn_active(cloud, stack, fabric):
    project = "p-clients"
    net = cloud.network.create_network(**owned(project, name="clients"))
    cloud.network.create_subnet(**owned(project, network_id=net.id, cidr="10.4.0.0/24", ip_version=4))
    made: dict[str, int] = {}
    errors: list[BaseException] = []

    def client(n: int) -> None:
        conn = stack.connection()
        try:
            for k in range(6):
                port = conn.network.create_port(**owned(project, network_id=net.id, name=f"c{n}-{k}",
                                                        binding_host_id="compute-1"))
                made[port.id] = port.revision_number
        except BaseException as err:  # noqa: BLE001 - asserted below
            errors.append(err)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    check(cloud, fabric, project, made)
