"""The L3 service plugin ``converge_router`` (entry point ``neutron.service_plugins``): Neutron's own
router plugin, recording routers, router interfaces and floating IPs as intent inside Neutron's
transaction, like the ML2 driver does for networks, subnets and ports. Enable it with
``service_plugins = converge_router`` in place of ``router``. Neutron instantiates it in every API worker
and in ``neutron-periodic-workers``; its callback registry calls the hooks below.

Which hooks, and why (Neutron 29.0.0, ``neutron/db/l3_db.py`` and ``neutron/plugins/ml2/plugin.py``):

- Routers: ``ROUTER`` ``PRECOMMIT_CREATE`` / ``PRECOMMIT_UPDATE`` / ``PRECOMMIT_DELETE``, each published
  inside ``db_api.CONTEXT_WRITER``; the router's DB row comes in ``metadata['router_db']``,
  ``desired_state`` and ``states[0]``. Create runs after the extended attributes (ha, distributed, AZ
  hints) are set, so this plugin subscribes at a later priority.
- A router's gateway has no precommit event of its own: the gateway port is created, updated and deleted
  through ML2, which publishes ``PORT`` ``PRECOMMIT_*`` inside its transaction, so the router is recorded
  again there with the gateway read from that port (and its revision bumped: see ``_record_gateway``).
  ``update_router`` also ends in ``PRECOMMIT_UPDATE`` after any gateway change; ``create_router`` does
  not, so on create the gateway port's transaction is the last one that can carry it. Neutron links the
  port to the router in the next transaction; if that one fails Neutron deletes the port, and the router
  is recorded again without it (a process dying between the two leaves Neutron with an orphan gateway
  port, and intent with that gateway, until the router is next written). ``ROUTER_GATEWAY``
  ``PRECOMMIT_UPDATE`` runs before the port exists: unused.
- Router interfaces: ``ROUTER_INTERFACE`` has only BEFORE/AFTER events. An interface is its port
  (device_owner ``network:router_interface``, device_id = the router), so the same ``PORT`` precommit
  events record it, once Neutron's ``routerports`` row for it exists (Neutron's last port update in
  ``_add_router_port`` comes after that row), and delete it with the port.
- What a controller needs to build rows from one document alone (OVN's router ports, the gateway's
  default route) is added to routers and interfaces by ``router_document`` and ``interface_of``: MACs,
  ``ip/prefixlen`` addresses and the external subnets' gateway IPs, the subnets read in the same
  transaction. A subnet's ``gateway_ip`` changed later records again the routers whose gateway port has
  an address on it: ``SUBNET`` ``BEFORE_UPDATE``, the one subnet update event inside ML2's transaction
  (Neutron has no ``PRECOMMIT_UPDATE`` for subnets), with each router's revision bumped
  (``_subnet_updating``). A subnet's cidr does not change, so ``networks`` cannot go stale.
- Floating IPs: ``FLOATING_IP`` ``PRECOMMIT_CREATE`` / ``PRECOMMIT_UPDATE`` inside the writer
  (``desired_state`` is the DB row, or the object when a port delete disassociates it), and
  ``PRECOMMIT_DELETE``, which Neutron re-publishes from the floating IP port's ``PORT`` precommit delete.

AFTER events only wake the sync workers: no controller I/O ever happens on the API path.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from neutron.db import models_v2
from neutron.db.models import l3 as l3_models
from neutron.objects import router as l3_objects
from neutron.services.l3_router.l3_router_plugin import L3RouterPlugin
from neutron_lib import constants as n_const
from neutron_lib.api import attributes
from neutron_lib.callbacks import events, priority_group, registry, resources
from neutron_lib.exceptions import l3 as l3_exc
from neutron_lib.plugins import constants as plugin_constants
from neutron_lib.plugins import directory
from sqlalchemy import select

from converge.core.kinds import Kind
from converge.neutron import recorder, translate

log = logging.getLogger(__name__)

# After Neutron's own ROUTER precommit-create handlers (extended attributes, flavor and driver association).
AFTER_NEUTRON = priority_group.PRIORITY_ROUTER_DRIVER + 1000

# -- translation (pure) ---------------------------------------------------------------------------------


def router_with_gateway(router: Mapping[str, Any], gateway_port: Mapping[str, Any] | None, *,
                        enable_snat: bool | None) -> dict[str, Any]:
    """The router dict as Neutron shows it once ``gateway_port`` is its gateway (None: no gateway)."""
    out = dict(router)
    out["external_gateway_info"] = None if gateway_port is None else {
        "network_id": gateway_port["network_id"], "enable_snat": enable_snat,
        "external_fixed_ips": [{"subnet_id": ip["subnet_id"], "ip_address": ip["ip_address"]}
                               for ip in gateway_port.get("fixed_ips") or ()]}
    return out


class Subnet(NamedTuple):
    """What a router's documents need of a subnet, read by the callers inside Neutron's transaction."""

    cidr: str
    gateway_ip: str | None


def networks(fixed_ips: Iterable[Mapping[str, Any]], cidrs: Mapping[str, str]) -> list[str]:
    """``ip/prefixlen`` of each address, the prefix length from its subnet's cidr; sorted.

    An address whose subnet ``cidrs`` lacks is left out, as ML2/OVN leaves out a subnet it cannot read:
    inside Neutron's transaction every allocated address has its subnet, so this does not happen there."""
    return sorted(f"{ip['ip_address']}/{ipaddress.ip_network(cidrs[ip['subnet_id']], strict=False).prefixlen}"
                  for ip in fixed_ips if ip["subnet_id"] in cidrs)


def router_document(router: Mapping[str, Any], gateway_port: Mapping[str, Any] | None,
                    subnets: Mapping[str, Subnet]) -> dict[str, Any]:
    """The router as recorded: ``router`` (with its ``external_gateway_info``) plus, when it has a gateway,
    what a controller building the gateway's rows from this one document needs (OVN's gateway router
    port and default route): ``gateway_port_id``, ``gateway_mac_address``, ``gateway_networks`` (the
    gateway port's addresses as ``ip/prefixlen``) and ``gateway_nexthops`` (its subnets' gateway IPs,
    those not null). Every place that records a router calls this, with the gateway port (id,
    mac_address, fixed_ips) and its subnets read where it stands, so one state gives one document."""
    out = dict(router)
    if not router.get("external_gateway_info") or gateway_port is None:
        return out
    fixed_ips = list(gateway_port.get("fixed_ips") or ())
    nexthops = {subnets[ip["subnet_id"]].gateway_ip for ip in fixed_ips if ip["subnet_id"] in subnets}
    out |= {"gateway_port_id": gateway_port["id"], "gateway_mac_address": gateway_port.get("mac_address"),
            "gateway_networks": networks(fixed_ips, {i: s.cidr for i, s in subnets.items()}),
            "gateway_nexthops": sorted(ip for ip in nexthops if ip is not None)}
    return out


def updated_gateway_ip(original: Mapping[str, Any], request: Mapping[str, Any]) -> str | None:
    """The ``gateway_ip`` a subnet update leaves: the request's, in the form Neutron stores (and lists) an
    address in, or the original's when the request does not set one. ``None``: no gateway."""
    if "gateway_ip" not in request:
        return original.get("gateway_ip")
    return str(ipaddress.ip_address(request["gateway_ip"])) if request["gateway_ip"] else None


def with_gateway_ips(subnets: Mapping[str, Subnet], gateway_ips: Mapping[str, str | None]) -> dict[str, Subnet]:
    """``subnets`` with the gateway IPs a subnet update in this transaction is about to write (the rows
    still hold the old ones)."""
    return {i: s._replace(gateway_ip=gateway_ips[i]) if i in gateway_ips else s for i, s in subnets.items()}


def is_interface(port: Mapping[str, Any]) -> bool:
    """The port stands for a router interface: a router interface owner, a router, an address."""
    return (port.get("device_owner") in n_const.ROUTER_INTERFACE_OWNERS and bool(port.get("device_id"))
            and bool(port.get("fixed_ips")))


def interface_of(port: Mapping[str, Any], cidrs: Mapping[str, str]) -> dict[str, Any] | None:
    """The router interface a port dict stands for (same id as the port), or None if it is not one.

    ``subnet_ids``: every subnet the port has an address on (one router port carries all the IPv6
    prefixes of a network added to the router); ``subnet_id``: the smallest of them, so it does not
    depend on the order Neutron lists them in. ``mac_address`` and ``networks`` (``ip/prefixlen`` of each
    address, the prefix lengths from ``cidrs``: subnet id → cidr, read by the caller) let a controller
    build the interface's router port from this document alone."""
    if not is_interface(port):
        return None
    fixed_ips = list(port.get("fixed_ips") or ())
    ids = sorted(ip["subnet_id"] for ip in fixed_ips)
    return {"id": port["id"], "project_id": translate.root_of(port), "router_id": port["device_id"],
            "subnet_id": ids[0], "subnet_ids": sorted(set(ids)), "port_id": port["id"],
            "mac_address": port.get("mac_address"), "networks": networks(fixed_ips, cidrs),
            "revision_number": port.get("revision_number")}


IDENTITY = ("id", "project_id", "tenant_id", "revision_number")  # who and which version, kept for translate


def visible(resource: Mapping[str, Any], attribute_map: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """The resource as the API shows it: only the attributes its (extended) attribute map declares visible.

    Neutron's ``_make_router_dict`` also returns keys the API strips (a top-level ``enable_snat`` that is
    only meant inside ``external_gateway_info``, ``gw_port_id``, ``ha_vr_id``); intent strips them too.
    A process without a map for the collection keeps everything rather than record an empty resource."""
    if not attribute_map:
        return dict(resource)
    return {k: v for k, v in resource.items() if k in IDENTITY or (attribute_map.get(k) or {}).get("is_visible")}


def is_gateway(port: Mapping[str, Any]) -> bool:
    return port.get("device_owner") == n_const.DEVICE_OWNER_ROUTER_GW and bool(port.get("device_id"))


# -- the plugin -----------------------------------------------------------------------------------------


class ConvergeL3RouterPlugin(L3RouterPlugin):  # type: ignore[misc]
    """Neutron's L3 router plugin, unchanged, plus the intent callbacks below (subscribed once per process)."""

    # Neutron reads these under the plugin's own class name (name-mangled): a subclass declares them again,
    # or routers and floating IPs are sorted and paginated in Python after loading every row.
    __native_pagination_support = True
    __native_sorting_support = True

    def __init__(self) -> None:
        super().__init__()
        subscribe()
        log.info("converge L3 router plugin ready")




def subscribe() -> None:
    for event, handler in ((events.PRECOMMIT_CREATE, _router_created), (events.PRECOMMIT_UPDATE, _router_updated),
                           (events.PRECOMMIT_DELETE, _router_deleted)):
        registry.subscribe(handler, resources.ROUTER, event, priority=AFTER_NEUTRON)
    for event in (events.PRECOMMIT_CREATE, events.PRECOMMIT_UPDATE, events.PRECOMMIT_DELETE):
        registry.subscribe(_port_changed, resources.PORT, event)
    registry.subscribe(_subnet_updating, resources.SUBNET, events.BEFORE_UPDATE)
    registry.subscribe(_fip_created, resources.FLOATING_IP, events.PRECOMMIT_CREATE)
    registry.subscribe(_fip_updated, resources.FLOATING_IP, events.PRECOMMIT_UPDATE)
    registry.subscribe(_fip_deleted, resources.FLOATING_IP, events.PRECOMMIT_DELETE)
    for resource, after in ((resources.ROUTER, (events.AFTER_CREATE, events.AFTER_UPDATE, events.AFTER_DELETE)),
                            (resources.ROUTER_INTERFACE, (events.AFTER_CREATE, events.AFTER_DELETE)),
                            (resources.ROUTER_GATEWAY, (events.AFTER_CREATE, events.AFTER_DELETE)),
                            (resources.FLOATING_IP, (events.AFTER_CREATE, events.AFTER_UPDATE,
                                                     events.AFTER_DELETE))):
        for event in after:
            registry.subscribe(_nudge, resource, event)


def _plugin() -> Any:
    return directory.get_plugin(plugin_constants.L3)


def _shown(collection: str, resource: Mapping[str, Any]) -> dict[str, Any]:
    return visible(resource, attributes.RESOURCES.get(collection))


# -- routers --------------------------------------------------------------------------------------------


def _subnets(context: Any, fixed_ips: Iterable[Mapping[str, Any]]) -> dict[str, Subnet]:
    """The subnets of these addresses (another project's too: an external network's), in one query inside
    Neutron's transaction."""
    ids = sorted({ip["subnet_id"] for ip in fixed_ips})
    if not ids:
        return {}
    subnet = models_v2.Subnet
    rows = context.session.execute(select(subnet.id, subnet.cidr, subnet.gateway_ip).where(subnet.id.in_(ids)))
    return {row.id: Subnet(row.cidr, row.gateway_ip) for row in rows}


def _gateway_port_of(router_db: Any) -> dict[str, Any] | None:
    """The router's gateway port as ``router_document`` takes it, from the row ``_make_router_dict`` reads."""
    port = router_db.gw_port
    if port is None:
        return None
    return {"id": port.id, "mac_address": port.mac_address,
            "fixed_ips": [{"subnet_id": ip.subnet_id, "ip_address": ip.ip_address} for ip in port.fixed_ips]}


def _upsert_router(context: Any, router: Mapping[str, Any], gateway_port: Mapping[str, Any] | None, *,
                   created: bool, gateway_ips: Mapping[str, str | None] | None = None) -> None:
    """The router's document (``router_document``), its gateway's subnets read here, in the transaction
    (``gateway_ips``: the subnets' gateway IPs this transaction is about to write, see ``_subnet_updating``)."""
    fixed_ips = (gateway_port or {}).get("fixed_ips") or () if router.get("external_gateway_info") else ()
    subnets = with_gateway_ips(_subnets(context, fixed_ips), gateway_ips or {})
    document = router_document(router, gateway_port, subnets)
    recorder.record_in(context, recorder.build(lambda: translate.upsert(Kind.ROUTER, document, created=created)))


def _record_router(context: Any, router_db: Any, *, created: bool) -> None:
    router = _shown("routers", _plugin()._make_router_dict(router_db))
    _upsert_router(context, router, _gateway_port_of(router_db), created=created)


def _router_created(resource: str, event: str, trigger: Any, payload: Any) -> None:
    _record_router(payload.context, payload.metadata["router_db"], created=True)


def _router_updated(resource: str, event: str, trigger: Any, payload: Any) -> None:
    _record_router(payload.context, payload.desired_state, created=False)


def _router_deleted(resource: str, event: str, trigger: Any, payload: Any) -> None:
    router_db = payload.latest_state
    recorder.record_in(payload.context, recorder.build(
        lambda: translate.delete(Kind.ROUTER, None, oid=payload.resource_id, root=router_db.project_id)))


def _record_gateway(context: Any, port: Mapping[str, Any], *, gone: bool) -> None:
    """The router again, its gateway read from the gateway port being written (or deleted).

    This transaction writes the port, not the router: a plain read of the router could be older than a
    concurrent router update that has already recorded a higher revision, and the ordering guard would
    then drop this gateway change. So the router's revision is bumped here, as Neutron bumps a resource
    whose part changes: its version-checked UPDATE conflicts with any concurrent writer of the router
    (StaleDataError, or a Galera certification failure), which Neutron's DB retry answers by running the
    whole port operation again on fresh rows. The recorded revision is the bumped one."""
    plugin = _plugin()
    try:
        router_db = plugin._get_router(context, port["device_id"])
    except l3_exc.RouterNotFound:  # a leftover gateway port of a router already gone: nothing to update
        return
    router_db.bump_revision()
    gateway = None if gone else port
    router = _shown("routers", router_with_gateway(plugin._make_router_dict(router_db), gateway,
                                                   enable_snat=router_db.enable_snat))
    _upsert_router(context, router, gateway, created=False)


def _subnet_updating(resource: str, event: str, trigger: Any, payload: Any) -> None:
    """A subnet's ``gateway_ip`` changes: every router whose gateway port has an address on that subnet is
    recorded again, its ``gateway_nexthops`` (the default route) with the new gateway IP.

    Neutron publishes no ``SUBNET`` ``PRECOMMIT_UPDATE``; ``BEFORE_UPDATE`` is published inside ML2's
    ``update_subnet`` transaction, just before the subnet's row is written, so the routers are recorded
    in that transaction (a refused update rolls them back) with the gateway IP the update is about to
    write (``updated_gateway_ip``), in place of the one the row still holds. As in ``_record_gateway``,
    this transaction writes the subnet, not the routers: each router's revision is bumped, so a
    concurrent writer of the router conflicts (Neutron retries) instead of the ordering guard dropping
    the newer nexthop. Routers are read in id order, any project's (an external subnet serves them all)."""
    original, request = payload.states[0], payload.states[1]
    gateway_ip = updated_gateway_ip(original, request)
    if gateway_ip == original.get("gateway_ip"):
        return
    ctx, subnet_id = payload.context, payload.resource_id
    router = l3_models.Router
    on_subnet = select(models_v2.IPAllocation.port_id).where(models_v2.IPAllocation.subnet_id == subnet_id)
    plugin = _plugin()
    for router_db in ctx.session.scalars(select(router).where(router.gw_port_id.in_(on_subnet))
                                         .order_by(router.id)).unique().all():  # the model eager-joins collections
        router_db.bump_revision()
        _upsert_router(ctx, _shown("routers", plugin._make_router_dict(router_db)), _gateway_port_of(router_db),
                       created=False, gateway_ips={subnet_id: gateway_ip})


# -- router interfaces (their ports) and gateway ports -------------------------------------------------


def _attached(context: Any, port: Mapping[str, Any]) -> bool:
    """Neutron's routerports row exists: the interface is really there, not just a port being set up."""
    query = select(l3_models.RouterPort.port_id).where(l3_models.RouterPort.router_id == port["device_id"],
                                                       l3_models.RouterPort.port_id == port["id"])
    return context.session.execute(query).first() is not None


def _port_changed(resource: str, event: str, trigger: Any, payload: Any) -> None:
    ctx = payload.context
    port = payload.desired_state if event == events.PRECOMMIT_UPDATE else payload.latest_state
    if not isinstance(port, Mapping):  # a bulk create hands over objects; neither a gateway nor attached yet
        return
    if is_gateway(port):
        _record_gateway(ctx, port, gone=event == events.PRECOMMIT_DELETE)
        return
    interface = None
    if event != events.PRECOMMIT_DELETE and is_interface(port) and _attached(ctx, port):
        interface = interface_of(port, {i: s.cidr for i, s in _subnets(ctx, port["fixed_ips"]).items()})
    if interface is not None:
        created = event == events.PRECOMMIT_CREATE or not is_interface(payload.states[0])
        recorder.record_in(ctx, recorder.build(
            lambda: translate.upsert(Kind.ROUTER_INTERFACE, interface, created=created)))
        return
    was = port if event == events.PRECOMMIT_DELETE else payload.states[0]
    if is_interface(was):
        root = recorder.root_of_recorded(ctx, Kind.ROUTER_INTERFACE, port["id"])
        if root is not None:
            recorder.record_in(ctx, recorder.build(
                lambda: translate.delete(Kind.ROUTER_INTERFACE, None, oid=port["id"], root=root)))


# -- floating IPs ---------------------------------------------------------------------------------------


def _record_fip(context: Any, state: Any, *, created: bool) -> None:
    fip = state if isinstance(state, l3_objects.FloatingIP) else l3_objects.FloatingIP._load_object(context, state)
    fip_dict = _shown("floatingips", _plugin()._make_floatingip_dict(fip))
    recorder.record_in(context, recorder.build(
        lambda: translate.upsert(Kind.FLOATING_IP, fip_dict, created=created)))


def _fip_created(resource: str, event: str, trigger: Any, payload: Any) -> None:
    _record_fip(payload.context, payload.desired_state, created=True)


def _fip_updated(resource: str, event: str, trigger: Any, payload: Any) -> None:
    _record_fip(payload.context, payload.desired_state, created=False)


def _fip_deleted(resource: str, event: str, trigger: Any, payload: Any) -> None:
    """Neutron deletes a floating IP by deleting its port; the payload is that port's."""
    ctx = payload.context
    port = payload.latest_state
    rows = ctx.session.execute(select(l3_models.FloatingIP.id, l3_models.FloatingIP.project_id).where(
        l3_models.FloatingIP.floating_port_id == port["id"])).all()
    recorder.record_in(ctx, recorder.build(
        lambda: [translate.delete(Kind.FLOATING_IP, None, oid=row.id, root=row.project_id) for row in rows]))


def _nudge(resource: str, event: str, trigger: Any, payload: Any) -> None:
    recorder.nudge()
