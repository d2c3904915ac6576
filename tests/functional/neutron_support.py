"""Shared by the modules that drive the real Neutron API: their pytest marks, the module's controller, a
stack with Converge loaded, and the comparison every such test ends with.

The comparison: Neutron's API is the truth, translated exactly as the driver translates it
(``translate.attributes``); the controller must hold exactly that, per project (its root) — no object
missing, none extra, no attribute different — and never a revision above the one Neutron shows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from openstack.connection import Connection

from converge.core.kinds import Kind
from converge.neutron import l3, translate
from converge.testing.fabric import FabricProcess
from converge.testing.mariadb import MariaDB
from converge.testing.neutron import NeutronStack

MARKS = [
    pytest.mark.neutron,
    # openstacksdk 4.x warns about its own internals on every call.
    pytest.mark.filterwarnings("ignore:The _compute_attributes method is deprecated"),
    pytest.mark.filterwarnings("ignore:The 'service_type' parameter is unnecesary"),
    pytest.mark.filterwarnings("ignore:Support for InfluxDB requires"),
]

Key = tuple[str, str]  # (kind, id), as the controller names an object
State = dict[Key, dict[str, Any]]

COLLECTIONS: dict[Kind, str] = {
    Kind.NETWORK: "networks", Kind.SUBNET: "subnets", Kind.PORT: "ports",
    Kind.SECURITY_GROUP: "security_groups", Kind.SECURITY_GROUP_RULE: "security_group_rules"}
# With the L3 plugin: an interface is its port (device_owner network:router_interface), as the plugin records it.
L3_COLLECTIONS: dict[Kind, str] = {**COLLECTIONS, Kind.ROUTER: "routers", Kind.FLOATING_IP: "floatingips",
                                   Kind.ROUTER_INTERFACE: "ports"}
# The collections whose resources carry converge:sync_state (rules are synced with their group's root).
SYNCED = ("networks", "subnets", "ports", "security_groups")
DEADLINE = 60.0
POLL = 0.2


@pytest.fixture(scope="module", name="fabric")
def module_fabric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FabricProcess]:
    """One controller per module, with faults, ports going up 0.2 s after creation."""
    with FabricProcess(tmp_path_factory.mktemp("fabric"), faults=True, port_up_delay=0.2) as process:
        yield process


@pytest.fixture(scope="module", name="stack")
def module_stack(tmp_path_factory: pytest.TempPathFactory, mariadb: MariaDB, fabric: FabricProcess
                 ) -> Iterator[NeutronStack]:
    """The module's stack as :func:`converge_stack` makes it; a module needing other options defines its own."""
    with converge_stack(tmp_path_factory.mktemp("neutron"), mariadb=mariadb, fabric=fabric) as stack:
        yield stack


@pytest.fixture(scope="module", name="cloud")
def module_cloud(stack: NeutronStack) -> Connection:
    """openstacksdk connected to the module's stack."""
    return stack.connection()


def converge_stack(workdir: Path, *, mariadb: MariaDB, fabric: FabricProcess,
                   service_plugins: tuple[str, ...] = (), **options: object) -> NeutronStack:
    """Neutron with Converge as its only mechanism driver, its extension driver, and a sync worker that
    polls every 50 ms and sweeps every 2 s against ``fabric`` (more ``[converge]`` options: ``options``);
    not started (a context manager)."""
    converge = {"controller_urls": fabric.url, "token": fabric.token, "sweep_interval": 2, "poll_interval": 0.05,
                **options}
    return NeutronStack(workdir, mariadb=mariadb, mechanism_drivers=["converge"], service_plugins=service_plugins,
                        config={"converge": converge},
                        ml2_config={"ml2": {"extension_drivers": "port_security,converge"}})


def listed(cloud: Connection, collection: str, project: str, query: str = "") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cloud.network.get(f"/{collection}?project_id={project}{query}").json()[collection]
    return items


def queried(name: str, values: Iterable[str]) -> str:
    """``name=v1&name=v2…``: the API's filter on several values."""
    return "&".join(f"{name}={value}" for value in sorted(set(values)))


def subnet_lookup(cloud: Connection, ids: Iterable[str]) -> dict[str, l3.Subnet]:
    """Subnet id → (cidr, gateway_ip), from ``GET /subnets`` (any project's: an external network's too)."""
    wanted = queried("id", ids)
    if not wanted:
        return {}
    subnets = cloud.network.get(f"/subnets?{wanted}").json()["subnets"]
    return {s["id"]: l3.Subnet(s["cidr"], s["gateway_ip"]) for s in subnets}


def gateway_ports(cloud: Connection, router_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Router id → its gateway port, from ``GET /ports?device_id=…&device_owner=network:router_gateway``
    (gateway ports have no project: they are not in the router's project's listing)."""
    wanted = queried("device_id", router_ids)
    if not wanted:
        return {}
    ports = cloud.network.get(f"/ports?{wanted}&device_owner=network:router_gateway").json()["ports"]
    return {port["device_id"]: port for port in ports}


def addresses(*ports: Mapping[str, Any] | None) -> list[str]:
    return [ip["subnet_id"] for port in ports if port for ip in port.get("fixed_ips") or ()]


def neutron_items(cloud: Connection, project: str, collections: Mapping[Kind, str] = COLLECTIONS
                  ) -> dict[Key, dict[str, Any]]:
    """Every resource Neutron lists for a project, as the API returns it; routers and router interfaces as
    the L3 plugin records them (``l3.router_document``, ``l3.interface_of``), from the API's answers: a
    router's gateway port, an interface's port, and their subnets."""
    items = {(kind.value, item["id"]): item for kind, collection in collections.items()
             if kind is not Kind.ROUTER_INTERFACE for item in listed(cloud, collection, project)}
    routers = [item for (kind, _), item in items.items() if kind == Kind.ROUTER.value]
    gateways = gateway_ports(cloud, [r["id"] for r in routers if r.get("external_gateway_info")])
    interfaces = (listed(cloud, "ports", project, "&device_owner=network:router_interface")
                  if Kind.ROUTER_INTERFACE in collections else [])
    subnets = subnet_lookup(cloud, addresses(*gateways.values(), *interfaces))
    for router in routers:
        items[(Kind.ROUTER.value, router["id"])] = l3.router_document(router, gateways.get(router["id"]), subnets)
    for port in interfaces:
        interface = l3.interface_of(port, {i: s.cidr for i, s in subnets.items()})
        assert interface is not None, port
        items[(Kind.ROUTER_INTERFACE.value, port["id"])] = interface
    return items


def neutron_state(cloud: Connection, project: str, collections: Mapping[Kind, str] = COLLECTIONS) -> State:
    """What Neutron holds for a project, as Converge should have sent it: (kind, id) → attributes."""
    return {key: translate.attributes(Kind(key[0]), item)
            for key, item in neutron_items(cloud, project, collections).items()}


def controller_state(fabric: FabricProcess, project: str) -> State:
    return {(o["kind"], o["id"]): o["attributes"] for o in fabric.objects(project)}


def states(cloud: Connection, fabric: FabricProcess, project: str,
           collections: Mapping[Kind, str] = COLLECTIONS) -> tuple[State, State]:
    """Neutron's and the controller's state, the controller read first: Neutron's revision numbers only
    grow, so a revision on the controller (it orders writes) never runs ahead of one read after it."""
    objects = fabric.objects(project)
    items = neutron_items(cloud, project, collections)
    for o in objects:
        item = items.get((o["kind"], o["id"]))
        if item is not None:
            neutron = int(item.get("revision_number") or 0)
            assert o["revision"] <= neutron, (
                f"{o['kind']} {o['id']}: revision {o['revision']} on the controller, {neutron} in Neutron after it")
    want = {key: translate.attributes(Kind(key[0]), item) for key, item in items.items()}
    return want, {(o["kind"], o["id"]): o["attributes"] for o in objects}


def describe(want: State, have: State) -> str:
    """What keeps the controller from Neutron's state: objects missing, extra, and the fields that differ."""

    def named(state: State, keys: set[Key]) -> list[str]:
        return [f"{k[0]} {k[1]} {state[k].get('name', '')!r}" for k in sorted(keys)[:5]]

    differ = sorted(k for k in set(want) & set(have) if want[k] != have[k])[:3]
    fields = {f"{k[0]} {k[1]}": {f: (want[k].get(f), have[k].get(f)) for f in sorted(set(want[k]) | set(have[k]))
                                 if want[k].get(f) != have[k].get(f)} for k in differ}
    return (f"missing on the controller {named(want, set(want) - set(have))}, "
            f"extra on the controller {named(have, set(have) - set(want))}, "
            f"differing fields (neutron, controller) {fields}")


def wait_converged(cloud: Connection, fabric: FabricProcess, *projects: str,
                   collections: Mapping[Kind, str] = COLLECTIONS, deadline: float = DEADLINE) -> State:
    """Until the controller holds exactly Neutron's state for every project; the union of those states.
    After ``deadline`` seconds, fails naming what differs per project and what Neutron shows as not synced."""
    end = time.monotonic() + deadline
    while True:
        pairs = {p: states(cloud, fabric, p, collections) for p in projects}
        if all(want == have for want, have in pairs.values()):
            return {k: v for want, _ in pairs.values() for k, v in want.items()}
        if time.monotonic() > end:
            wrong = {p: describe(want, have) for p, (want, have) in pairs.items() if want != have}
            shown = {p: {i: s for c in SYNCED if c in collections.values()
                         for i, s in sync_states(cloud, c, p).items() if s != ("synced", None)} for p in wrong}
            pytest.fail(f"not converged after {deadline:.0f} s: {wrong}; not synced according to Neutron: {shown}")
        time.sleep(POLL)


def sync_states(cloud: Connection, collection: str, project: str) -> dict[str, tuple[str, str | None]]:
    return {i["id"]: (i["converge:sync_state"], i["converge:sync_error"]) for i in listed(cloud, collection, project)}


def wait_synced(cloud: Connection, project: str, collections: tuple[str, ...] = SYNCED) -> None:
    """Every resource of the project reads ``synced``. The status row can land just after the controller
    answered (and after a wait_converged saw the result), so this polls before it asserts."""
    end = time.monotonic() + DEADLINE
    while True:
        unsynced = {(c, i): s for c in collections for i, s in sync_states(cloud, c, project).items()
                    if s != ("synced", None)}
        if not unsynced or time.monotonic() > end:
            break
        time.sleep(POLL)
    assert unsynced == {}, f"{project}: not synced after {DEADLINE:.0f} s"
