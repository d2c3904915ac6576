"""Converge documents → OVN Northbound rows, named as Neutron's in-tree OVN driver (ML2/OVN) names them.

Pure and deterministic: the same document always gives equal rows (no random MACs, no UUIDs; sets are
sorted lists, maps ``dict[str, str]``, optional columns 0- or 1-element lists as python-ovs's IDL returns
them), so the backend can compare what it would write with its replica of NB column by column. Every
row carries every column of :data:`MANAGED` for its table (the schema default where the document says
nothing). Checked against the NB schema of OVN 23.03 (7.0.0) by the unit tests.

Names and matches follow ML2/OVN (``neutron/common/ovn/acl.py``, ``ovn_client.py``) so an operator who
knows one reads the other: switches and routers ``neutron-<id>``, router ports ``lrp-<port id>``, port
groups ``pg_<id>``, the shared ``neutron_pg_drop``. A document this module cannot express in NB raises
:class:`Unsupported`, naming the attribute: the backend refuses that object with the message rather than
write something that behaves differently from what Neutron shows. ``docs/ovn.md`` lists what is
supported against ML2/OVN.

Who calls it: ``apply.py`` (:func:`object_rows` per document, :func:`snat_rows` for a router with
SNAT, :func:`shared_rows` once). Security groups and rules are in ``acl.py``; the managed columns and
the row helpers in ``columns.py``.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from converge.backends.ovn.acl import acl_match, security_group, security_group_rule, shared_rows
from converge.backends.ovn.columns import (
    CONTAINER_COLUMNS,
    DHCP_LEASE_TIME,
    MANAGED,
    Settings,
    Unsupported,
    identity,
    ip_version,
    key_of,
    lrp_name,
    need,
    ovn_name,
    owned,
    pg_name,
    refuse,
    row,
)
from converge.backends.ovn.rows import PG_DROP, SHARED, ObjectKey, ObjectRows, RowRef, RowSpec, Slot
from converge.core.canonical import ObjectDoc
from converge.core.kinds import Kind

# Re-exported: the backend and the tests read them here, next to the translation they describe.
__all__ = ["CONTAINER_COLUMNS", "MANAGED", "PG_DROP", "SHARED", "Settings", "Unsupported", "acl_match", "lrp_name",
           "object_rows", "ovn_name", "pg_name", "server_mac", "shared_rows", "snat_rows"]


# -- networks and subnets -------------------------------------------------------------------------------


def _network(doc: ObjectDoc, settings: Settings) -> tuple[RowSpec, ...]:
    a = doc.attributes
    refuse(doc, "qos_policy_id", "QoS")
    net_type, physnet = a.get("provider:network_type"), a.get("provider:physical_network")
    ids = {"neutron:network_name": str(a.get("name") or "")}
    if a.get("mtu") is not None:
        ids["neutron:mtu"] = str(a["mtu"])
    if net_type:
        ids["neutron:provnet-network-type"] = str(net_type)
    if physnet:
        ids["neutron:provnet-physical-network"] = str(physnet)
    other_config = {"vlan-passthru": "true"} if a.get("vlan_transparent") else {}
    rows = [row("Logical_Switch", "ls", {"name": ovn_name(doc.id), "other_config": other_config,
                                          "external_ids": identity(doc, **ids)})]
    if net_type in ("vlan", "flat"):
        physnet = need(doc, "provider:physical_network")
        tag = [int(need(doc, "provider:segmentation_id"))] if net_type == "vlan" else []
        # A localnet port's VLAN is tag_request (ovn-nb(5)); tag is what northd copies from it.
        rows.append(row("Logical_Switch_Port", "localnet", {
            "name": f"provnet-{doc.id}", "type": "localnet", "addresses": ["unknown"],
            "options": {"network_name": str(physnet)}, "tag_request": tag,
            "external_ids": owned(key_of(doc), **{"neutron:provnet-physical-network": str(physnet)})},
            parent=Slot(key_of(doc), "ls", "ports")))
    return tuple(rows)


def server_mac(subnet_id: str) -> str:
    """The DHCP server MAC of a subnet: locally administered unicast (ML2/OVN's fa:16:3e prefix), stable."""
    tail = hashlib.sha256(subnet_id.encode()).digest()[:3]
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in tail)


def _dns_servers(servers: list[str]) -> str | None:
    """ML2/OVN's form ``{a, b}``; none when empty or when any is the any-address (Neutron: announce none)."""
    if not servers or any(ipaddress.ip_address(s).is_unspecified for s in servers):
        return None
    return "{" + ", ".join(servers) + "}"


def _dhcp4(doc: ObjectDoc, cidr: str) -> dict[str, str]:
    a = doc.attributes
    gateway = a.get("gateway_ip")
    # ML2/OVN uses the metadata port's address when there is no gateway; there is no metadata port here.
    server = gateway or str(next(ipaddress.ip_network(cidr, strict=False).hosts()))
    options = {"server_id": server, "server_mac": server_mac(doc.id), "lease_time": DHCP_LEASE_TIME}
    if gateway:
        options["router"] = gateway
    dns = _dns_servers(list(a.get("dns_nameservers") or []))
    if dns:
        options["dns_server"] = dns
    routes = [f"{r['destination']},{r['nexthop']}" for r in a.get("host_routes") or []]
    if routes:
        # RFC 3442: a client ignores the router option when option 121 is present, so the default goes in too.
        if gateway:
            routes.append(f"0.0.0.0/0,{gateway}")
        options["classless_static_route"] = "{" + ", ".join(routes) + "}"
    return options


def _dhcp6(doc: ObjectDoc) -> dict[str, str]:
    mode = doc.attributes.get("ipv6_address_mode")
    if mode not in ("dhcpv6-stateful", "dhcpv6-stateless"):
        return {}  # SLAAC or no mode: OVN's DHCPv6 has nothing to answer (ML2/OVN writes no row at all)
    options = {"server_id": server_mac(doc.id)}
    dns = _dns_servers(list(doc.attributes.get("dns_nameservers") or []))
    if dns:
        options["dns_server"] = dns
    if mode == "dhcpv6-stateless":
        options["dhcpv6_stateless"] = "true"
    return options


def _subnet(doc: ObjectDoc, settings: Settings) -> tuple[RowSpec, ...]:
    a = doc.attributes
    refuse(doc, "segment_id", "routed networks")
    if a.get("subnetpool_id") == "prefix_delegation":
        raise Unsupported(f"subnet {doc.id}: IPv6 prefix delegation (subnetpool_id 'prefix_delegation') is not "
                          "supported by the OVN backend yet")
    cidr = str(need(doc, "cidr"))
    options: dict[str, str] = {}
    if a.get("enable_dhcp", True):
        options = _dhcp4(doc, cidr) if ip_version(cidr) == 4 else _dhcp6(doc)
    # Always a row, DHCP or not, so a port's reference to it never depends on the subnet's settings.
    ids = identity(doc, subnet_id=doc.id, **{"neutron:network_id": str(need(doc, "network_id"))})
    return (row("DHCP_Options", "dhcp", {"cidr": cidr, "options": options, "external_ids": ids}),)


# -- ports ----------------------------------------------------------------------------------------------

ROUTER_INTERFACE_OWNERS = ("network:router_interface", "network:router_interface_distributed",
                           "network:ha_router_replicated_interface")
ROUTER_GATEWAY = "network:router_gateway"
FLOATING_IP_OWNER = "network:floatingip"
EXTERNAL_VNIC_TYPES = ("direct", "direct-physical", "macvtap", "baremetal")  # ML2/OVN: type=external


def _check_port(doc: ObjectDoc) -> None:
    a = doc.attributes
    refuse(doc, "qos_policy_id", "QoS")
    if a.get("device_owner") == "trunk:subport":
        raise Unsupported(f"port {doc.id}: device_owner 'trunk:subport' (trunks) is not supported by the OVN "
                          "backend yet")
    profile = a.get("binding:profile") or {}
    for nested in ("parent_name", "tag"):
        if nested in profile:
            raise Unsupported(f"port {doc.id}: attribute 'binding:profile' key {nested!r} (a nested container "
                              "port) is not supported by the OVN backend yet")
    vnic = a.get("binding:vnic_type") or "normal"
    if vnic in EXTERNAL_VNIC_TYPES and "switchdev" not in (profile.get("capabilities") or []):
        raise Unsupported(f"port {doc.id}: attribute 'binding:vnic_type' {vnic!r} (an OVN external port) is not "
                          "supported by the OVN backend yet")


def _port_security(mac: str, ips: list[str], pairs: list[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """ML2/OVN's port security: the port's MAC with its addresses and same-MAC pairs' addresses, plus one
    entry per pair with its own MAC; and those other MACs, which the port's ``addresses`` list too.
    (ML2/OVN also writes a ``VRRPv3`` entry per such pair: OVN 23.03 does not know that form.)"""
    own = [mac, *ips]
    entries: set[str] = set()
    other_macs: set[str] = set()
    for pair in pairs:
        pair_mac = str(pair.get("mac_address") or mac)
        if pair_mac == mac:
            own.append(str(pair["ip_address"]))
        else:
            entries.add(f"{pair_mac} {pair['ip_address']}")
            other_macs.add(pair_mac)
    entries.add(" ".join(own))
    return sorted(entries), sorted(other_macs)


def _port(doc: ObjectDoc, settings: Settings) -> tuple[RowSpec, ...]:
    a = doc.attributes
    network = ("network", str(need(doc, "network_id")))
    owner = str(a.get("device_owner") or "")
    enabled = [bool(a.get("admin_state_up", True))]
    ids = {"neutron:port_name": str(a.get("name") or ""), "neutron:device_id": str(a.get("device_id") or ""),
           "neutron:device_owner": owner, "neutron:network_name": ovn_name(network[1])}
    parent = Slot(network, "ls", "ports")
    if owner == FLOATING_IP_OWNER:
        # ML2/OVN writes no switch port for a floating IP's port (its address lives in a NAT). The object
        # still needs a row to carry its identity and stamps: a disabled port with no address does nothing.
        return (row("Logical_Switch_Port", "lsp", {"name": doc.id, "enabled": [False],
                                                   "external_ids": identity(doc, **ids)}, parent=parent),)
    if owner in ROUTER_INTERFACE_OWNERS or owner == ROUTER_GATEWAY:
        options = {"router-port": lrp_name(doc.id)}
        if owner == ROUTER_GATEWAY:
            options["nat-addresses"] = "router"  # the gateway chassis answers ARP for the NAT addresses
        return (row("Logical_Switch_Port", "lsp", {
            "name": doc.id, "type": "router", "addresses": ["router"], "options": options, "enabled": enabled,
            "external_ids": identity(doc, **ids)}, parent=parent),)

    _check_port(doc)
    mac = str(need(doc, "mac_address"))
    fixed_ips = [ip for ip in a.get("fixed_ips") or [] if ip.get("ip_address")]
    ips = [str(ip["ip_address"]) for ip in fixed_ips]
    trusted = owner.startswith("network:")  # ML2/OVN: Neutron's own ports get no port security, no groups
    secured = a.get("port_security_enabled") is not False and not trusted
    port_security, other_macs = (_port_security(mac, ips, list(a.get("allowed_address_pairs") or []))
                                 if secured else ([], []))
    # Without port security the port may send and receive for any MAC: OVN's "unknown" address (ML2/OVN).
    addresses = sorted({" ".join([mac, *ips]), *other_macs, *([] if secured else ["unknown"])})
    dhcp: dict[int, list[RowRef]] = {4: [], 6: []}
    if not owner.startswith(("network:", "neutron:")):  # ML2/OVN serves DHCP to every other port
        for ip in fixed_ips:
            version = ip_version(str(ip["ip_address"]))
            if not dhcp[version] and ip.get("subnet_id"):
                dhcp[version] = [RowRef(("subnet", str(ip["subnet_id"])), "dhcp")]
    groups = sorted(a.get("security_groups") or []) if secured else []
    if groups:
        ids["neutron:security_group_ids"] = " ".join(groups)
    options = {"requested-chassis": str(a["binding:host_id"])} if a.get("binding:host_id") else {}
    if a.get("binding:vnic_type"):
        ids["neutron:vnic_type"] = str(a["binding:vnic_type"])
    also_in = ((Slot(SHARED, PG_DROP, "ports"), *(Slot(("security_group", g), "pg", "ports") for g in groups))
               if secured else ())
    return (row("Logical_Switch_Port", "lsp", {
        "name": doc.id, "addresses": addresses, "port_security": port_security, "enabled": enabled,
        "options": options, "dhcpv4_options": dhcp[4], "dhcpv6_options": dhcp[6],
        "external_ids": identity(doc, **ids)}, parent=parent, also_in=also_in),)


# -- routers --------------------------------------------------------------------------------------------


def _router(doc: ObjectDoc, settings: Settings) -> tuple[RowSpec, ...]:
    a = doc.attributes
    refuse(doc, "distributed", "DVR: OVN routes centrally on the gateway chassis")
    key = key_of(doc)
    ids = {"neutron:router_name": str(a.get("name") or "")}
    extra: list[RowSpec] = []
    for route in a.get("routes") or []:
        destination, nexthop = str(route["destination"]), str(route["nexthop"])
        extra.append(row("Logical_Router_Static_Route", f"route:{destination}:{nexthop}", {
            "ip_prefix": destination, "nexthop": nexthop,
            "external_ids": owned(key, **{"neutron:is_static_route": "true"})},
            parent=Slot(key, "lr", "static_routes")))
    gateway = a.get("gateway_port_id")
    if gateway and a.get("external_network_id"):
        extra += _gateway(doc, settings, str(gateway))
        snat = a.get("enable_snat", True) is not False  # Neutron's default (enable_snat_by_default)
        ids["neutron:gw_port_id"] = str(gateway)
        ids["converge:enable_snat"] = "true" if snat else "false"
        v4 = [n for n in a["gateway_networks"] if ip_version(n) == 4]
        if snat and v4:
            # The backend derives the router's SNAT rows (snat_rows) from this and its interfaces.
            ids["converge:snat_ip"] = str(ipaddress.ip_interface(v4[0]).ip)
    options = {"always_learn_from_arp_request": "false", "dynamic_neigh_routers": "true"}
    primary = row("Logical_Router", "lr", {"name": ovn_name(doc.id), "enabled": [bool(a.get("admin_state_up", True))],
                                            "options": options, "external_ids": identity(doc, **ids)})
    return (primary, *extra)


def _gateway(doc: ObjectDoc, settings: Settings, port_id: str) -> list[RowSpec]:
    """The gateway router port, its gateway chassis and default routes (ML2/OVN's ``_add_router_ext_gw``)."""
    key, a = key_of(doc), doc.attributes
    networks = sorted(str(n) for n in need(doc, "gateway_networks"))
    rows = [row("Logical_Router_Port", "gw", {
        "name": lrp_name(port_id), "mac": str(need(doc, "gateway_mac_address")), "networks": networks,
        "external_ids": owned(key, **{"neutron:is_ext_gw": "True", "neutron:router_name": ovn_name(doc.id),
                                       "neutron:network_name": ovn_name(str(a["external_network_id"]))})},
        parent=Slot(key, "lr", "ports"))]
    for index, chassis in enumerate(settings.gateway_chassis):
        rows.append(row("Gateway_Chassis", f"gwc:{chassis}", {
            "name": f"{lrp_name(port_id)}_{chassis}", "chassis_name": chassis,
            "priority": len(settings.gateway_chassis) - index, "external_ids": owned(key)},
            parent=Slot(key, "gw", "gateway_chassis")))
    nexthops = sorted(str(n) for n in a.get("gateway_nexthops") or [])
    for version, prefix in ((4, "0.0.0.0/0"), (6, "::/0")):
        hop = next((n for n in nexthops if ip_version(n) == version), None)
        if hop is not None:
            rows.append(row("Logical_Router_Static_Route", f"route:default{version}", {
                "ip_prefix": prefix, "nexthop": hop,
                "external_ids": owned(key, **{"neutron:is_ext_gw": "true"})},
                parent=Slot(key, "lr", "static_routes")))
    return rows


def snat_rows(router_id: str, snat_ip: str, networks: Iterable[str]) -> tuple[RowSpec, ...]:
    """One ``snat`` NAT per IPv4 network attached to the router, translated for its gateway address.

    ``networks`` may be subnets' cidrs or router ports' ``ip/prefixlen``: both name the same network."""
    router: ObjectKey = ("router", router_id)
    cidrs = sorted({str(ipaddress.ip_network(n, strict=False)) for n in networks if ip_version(n) == 4},
                   key=lambda c: ipaddress.ip_network(c))
    return tuple(row("NAT", f"snat:{cidr}", {
        "type": "snat", "external_ip": snat_ip, "logical_ip": cidr, "external_ids": owned(router)},
        parent=Slot(router, "lr", "nat")) for cidr in cidrs)


def _router_interface(doc: ObjectDoc, settings: Settings) -> tuple[RowSpec, ...]:
    a = doc.attributes
    router = str(need(doc, "router_id"))
    networks = sorted(str(n) for n in need(doc, "networks"))  # an LRP needs at least one (min 1)
    subnets = sorted(str(s) for s in a.get("subnet_ids") or [a.get("subnet_id")] if s)
    ids = {"neutron:router_name": ovn_name(router), "neutron:is_ext_gw": "False",
           "neutron:subnet_ids": " ".join(subnets)}
    return (row("Logical_Router_Port", "lrp", {
        "name": lrp_name(doc.id), "mac": str(need(doc, "mac_address")), "networks": networks,
        "external_ids": identity(doc, **ids)}, parent=Slot(("router", router), "lr", "ports")),)


def _floating_ip(doc: ObjectDoc, settings: Settings) -> tuple[RowSpec, ...]:
    a = doc.attributes
    if not (a.get("port_id") and a.get("router_id") and a.get("fixed_ip_address")):
        return ()  # not associated: nothing in NB (the backend keeps its stamp in the root's marker)
    refuse(doc, "qos_policy_id", "QoS")
    router = str(a["router_id"])
    ids = {"neutron:fip_id": doc.id, "neutron:fip_port_id": str(a["port_id"]),
           "neutron:router_name": ovn_name(router),
           "neutron:fip_network_id": str(a.get("floating_network_id") or "")}
    # Centralized on the gateway chassis: no logical_port/external_mac, which would make it distributed.
    return (row("NAT", "nat", {
        "type": "dnat_and_snat", "external_ip": str(need(doc, "floating_ip_address")),
        "logical_ip": str(a["fixed_ip_address"]), "external_ids": identity(doc, **ids)},
        parent=Slot(("router", router), "lr", "nat")),)




_BY_KIND: Mapping[Kind, Callable[[ObjectDoc, Settings], tuple[RowSpec, ...]]] = {
    Kind.NETWORK: _network,
    Kind.SUBNET: _subnet,
    Kind.PORT: _port,
    Kind.SECURITY_GROUP: security_group,
    Kind.SECURITY_GROUP_RULE: security_group_rule,
    Kind.ROUTER: _router,
    Kind.ROUTER_INTERFACE: _router_interface,
    Kind.FLOATING_IP: _floating_ip,
}


def object_rows(doc: ObjectDoc, settings: Settings) -> ObjectRows:
    """Every NB row ``doc`` stands for, primary first; raises :class:`Unsupported` for what NB cannot say."""
    try:
        rows = _BY_KIND[doc.kind](doc, settings)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, Unsupported):
            raise
        # A malformed value (an address that is not one, a route without a nexthop): refused the same way.
        raise Unsupported(f"{doc.kind.value} {doc.id}: cannot translate ({type(exc).__name__}: {exc})") from exc
    return ObjectRows(key=key_of(doc), rows=rows)
