"""A router's default route follows its external subnet, and intent the L3 plugin recorded is what
``converge drift --neutron`` derives from the API, through the real Neutron API.

Converge loaded (``converge`` in ML2, ``converge_router``), no sync worker: what is checked is intent
itself, the rows of ``converge_desired`` in Neutron's database. On a cloud with a router (gateway and an
interface) ``drift --neutron`` reports nothing, and still nothing after the external subnet's
``gateway_ip`` changes: the subnet update recorded the router again with the new nexthop (and a revision
bumped in that transaction, never above Neutron's).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from neutron_support import MARKS
from openstack.connection import Connection
from sqlalchemy import select

from converge.store import db
from converge.store.schema import desired
from converge.testing.mariadb import MariaDB
from converge.testing.neutron import NeutronStack, owned

pytestmark = MARKS


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mariadb: MariaDB) -> Iterator[NeutronStack]:
    with NeutronStack(tmp_path_factory.mktemp("neutron"), mariadb=mariadb, mechanism_drivers=["converge"],
                      service_plugins=["converge_router"], periodic_workers=False) as stack:
        yield stack


def drift(stack: NeutronStack) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "converge.cli.main", "drift", "--neutron", *stack.config_args(),
                           "--neutron-url", stack.url], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def recorded(stack: NeutronStack, kind: str, oid: str) -> tuple[int, dict[str, Any]]:
    """(revision, attributes) of an object's row in converge_desired."""
    engine = db.make_engine(stack.db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(select(desired.c.revision, desired.c.attributes)
                               .where(desired.c.kind == kind, desired.c.id == oid)).one()
    finally:
        engine.dispose()
    return row.revision, json.loads(row.attributes)


def revision(cloud: Connection, router_id: str) -> int:
    return int(cloud.network.get(f"/routers/{router_id}").json()["router"]["revision_number"])


def test_a_routers_nexthop_follows_its_external_subnets_gateway_ip_and_drift_sees_nothing(stack):
    cloud = stack.connection()
    public = cloud.network.create_network(**owned("p-gw-public", name="public", is_router_external=True))
    external = cloud.network.create_subnet(**owned(
        "p-gw-public", network_id=public.id, cidr="172.24.4.0/24", ip_version=4,
        allocation_pools=[{"start": "172.24.4.10", "end": "172.24.4.200"}]))  # .254 free for the new gateway
    net = cloud.network.create_network(**owned("p-gw-tenant", name="inside"))
    inside = cloud.network.create_subnet(**owned("p-gw-tenant", network_id=net.id, cidr="10.10.0.0/24",
                                                 ip_version=4))
    router = cloud.network.create_router(**owned("p-gw-tenant", name="edge",
                                                 external_gateway_info={"network_id": public.id}))
    interface = cloud.network.add_interface_to_router(router, subnet_id=inside.id)["port_id"]

    _, attributes = recorded(stack, "router", router.id)
    assert attributes["gateway_nexthops"] == ["172.24.4.1"]
    assert recorded(stack, "router_interface", interface)[1]["networks"] == ["10.10.0.1/24"]
    first = drift(stack)
    assert first.returncode == 0 and "no difference: intent already matches Neutron" in first.stdout, first.stdout

    for gateway_ip, nexthops in (("172.24.4.254", ["172.24.4.254"]), (None, [])):
        before = revision(cloud, router.id)
        cloud.network.update_subnet(external, gateway_ip=gateway_ip)
        rev, attributes = recorded(stack, "router", router.id)
        assert attributes["gateway_nexthops"] == nexthops, gateway_ip
        assert before < rev <= revision(cloud, router.id)  # bumped in the subnet's transaction
        again = drift(stack)
        assert again.returncode == 0 and "no difference: intent already matches Neutron" in again.stdout, again.stdout
