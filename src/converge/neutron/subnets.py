"""A subnet's deletion as it reaches ports: recorded at PRECOMMIT time, inside Neutron's transaction.

Deleting a subnet removes its addresses from the ports still holding them — DHCP ports, and any port on
an IPv6 auto-address (SLAAC) subnet — by a bulk delete of their IP allocations (``delete_subnet`` in
``neutron/db/db_base_plugin_v2.py``): no port hook runs and the ports' revisions do not move. Those ports
are read at ``SUBNET`` ``PRECOMMIT_DELETE_ASSOCIATIONS``, just before that delete and in the same
transaction, and recorded again without the subnet's addresses. If Neutron then refuses the delete (a
user port still holds an address of a subnet that is not auto-address), the transaction rolls back and
nothing is recorded.

(The other direction needs nothing here: a new auto-address subnet's addresses are added to ports by
``update_port``, whose precommit records them. A subnet's ``gateway_ip`` change reaches routers — their
default route — through the L3 plugin, ``converge.neutron.l3._subnet_updating``: routers are recorded
only where ``converge_router`` is loaded, and it subscribes there.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from neutron.db import models_v2
from neutron_lib.callbacks import events, registry, resources
from neutron_lib.plugins import directory
from sqlalchemy import select

from converge.core.kinds import Kind
from converge.neutron import recorder, translate


def subscribe() -> None:
    """Idempotent: neutron-lib keeps one subscription per callback however often the driver initialises."""
    registry.subscribe(_addresses_released, resources.SUBNET, events.PRECOMMIT_DELETE_ASSOCIATIONS)


def without_subnet(port: Mapping[str, Any], subnet_id: str) -> dict[str, Any]:
    """The port as Neutron shows it once the subnet's addresses are gone from it."""
    return {**port, "fixed_ips": [ip for ip in port.get("fixed_ips") or () if ip["subnet_id"] != subnet_id]}


def _addresses_released(resource: str, event: str, trigger: Any, payload: Any) -> None:
    ctx = payload.context
    subnet_id = payload.resource_id
    holders = select(models_v2.IPAllocation.port_id).where(models_v2.IPAllocation.subnet_id == subnet_id).distinct()
    port_ids = [row.port_id for row in ctx.session.execute(holders)]
    if not port_ids:
        return
    ports = directory.get_plugin().get_ports(ctx.elevated(), filters={"id": port_ids})
    recorder.record_in(ctx, recorder.build(
        lambda: [translate.upsert(Kind.PORT, without_subnet(port, subnet_id), created=False) for port in ports]))
