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

Who calls it: ``backend.py`` (:func:`object_rows` per document, :func:`snat_rows` for a router with
SNAT, :func:`shared_rows` once), ``replica.py`` (:data:`MANAGED`, :data:`CONTAINER_COLUMNS`).
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from converge.backends.ovn.rows import PG_DROP, SHARED, ObjectKey, ObjectRows, RowRef, RowSpec, Slot
from converge.core.canonical import ObjectDoc
from converge.core.kinds import Kind


@dataclass(frozen=True)
class Settings:
    """Deployment settings translation needs besides the document."""

    gateway_chassis: tuple[str, ...] = ()  # chassis names for router gateway ports, highest priority first


class Unsupported(ValueError):
    """A document the OVN backend cannot express in NB (yet): the message names the attribute."""


# The columns Converge writes and compares, per table, with the schema default each takes when the
# document has nothing for it. Columns OVN writes itself (LSP ``up``, ``tag``, ``dynamic_addresses``) and
# container columns (below) are not managed, so neither northd nor membership changes look like drift.
_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "Logical_Switch": {"name": "", "other_config": {}, "external_ids": {}},
    "Logical_Switch_Port": {"name": "", "type": "", "options": {}, "parent_name": [], "tag_request": [],
                            "addresses": [], "port_security": [], "enabled": [], "dhcpv4_options": [],
                            "dhcpv6_options": [], "external_ids": {}},
    "DHCP_Options": {"cidr": "", "options": {}, "external_ids": {}},
    "Port_Group": {"name": "", "external_ids": {}},
    "ACL": {"name": [], "priority": 0, "direction": "", "match": "", "action": "", "log": False, "severity": [],
            "meter": [], "label": 0, "options": {}, "external_ids": {}},
    "Logical_Router": {"name": "", "enabled": [], "options": {}, "external_ids": {}},
    "Logical_Router_Port": {"name": "", "mac": "", "networks": [], "enabled": [], "peer": [], "options": {},
                            "ipv6_ra_configs": {}, "external_ids": {}},
    "Logical_Router_Static_Route": {"route_table": "", "ip_prefix": "", "policy": [], "nexthop": "",
                                    "output_port": [], "options": {}, "external_ids": {}},
    "Gateway_Chassis": {"name": "", "chassis_name": "", "priority": 0, "options": {}, "external_ids": {}},
    "NAT": {"type": "", "external_ip": "", "external_mac": [], "external_port_range": "", "logical_ip": "",
            "logical_port": [], "options": {}, "external_ids": {}},
}
MANAGED: Mapping[str, tuple[str, ...]] = {table: tuple(columns) for table, columns in _DEFAULTS.items()}

# The columns that list child rows (or members): written by the backend from Slot/also_in, never managed.
CONTAINER_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "Logical_Switch": ("ports",),
    "Port_Group": ("ports", "acls"),
    "Logical_Router": ("ports", "static_routes", "nat"),
    "Logical_Router_Port": ("gateway_chassis",),
}

ACL_PRIORITY_ALLOW = 1002  # ML2/OVN's priorities: a rule's ACL beats the default drop
ACL_PRIORITY_DROP = 1001
DHCP_LEASE_TIME = "43200"  # ML2/OVN's default (dhcp_default_lease_time)


def _row(table: str, key: str, columns: Mapping[str, Any], *, parent: Slot | None = None,
         also_in: tuple[Slot, ...] = ()) -> RowSpec:
    """A row with every managed column: ``columns`` over the table's defaults (fresh copies)."""
    unknown = set(columns) - set(_DEFAULTS[table])
    if unknown:  # a programming error, not a document's: every written column must be compared
        raise AssertionError(f"{table}: {sorted(unknown)} not in MANAGED")
    return RowSpec(table=table, key=key, columns={**copy.deepcopy(dict(_DEFAULTS[table])), **columns},
                   parent=parent, also_in=also_in)


def _identity(doc: ObjectDoc, **neutron: str) -> dict[str, str]:
    """A primary row's external_ids: ML2/OVN's keys plus the object's identity (the backend adds root and stamps)."""
    return {**neutron, "converge:kind": doc.kind.value, "converge:id": doc.id}


def _owned(owner: ObjectKey, **neutron: str) -> dict[str, str]:
    return {**neutron, "converge:owner": f"{owner[0]}/{owner[1]}"}


def _need(doc: ObjectDoc, attribute: str) -> Any:
    value = doc.attributes.get(attribute)
    if value is None or value == "" or value == []:
        raise Unsupported(f"{doc.kind.value} {doc.id}: attribute {attribute!r} is missing or empty; the OVN "
                          "backend needs it")
    return value


def _refuse(doc: ObjectDoc, attribute: str, why: str) -> None:
    if doc.attributes.get(attribute) not in (None, "", [], {}, False):
        raise Unsupported(f"{doc.kind.value} {doc.id}: attribute {attribute!r} is not supported by the OVN "
                          f"backend yet ({why})")


def _version(address: str) -> int:
    return ipaddress.ip_interface(address).version


def ovn_name(oid: str) -> str:
    """A switch's or router's name, ``neutron-<id>`` (ML2/OVN's ``ovn_name``)."""
    return f"neutron-{oid}"


def pg_name(security_group_id: str) -> str:
    return f"pg_{security_group_id.replace('-', '_')}"


def lrp_name(port_id: str) -> str:
    return f"lrp-{port_id}"


# -- networks and subnets -------------------------------------------------------------------------------


def _network(doc: ObjectDoc, settings: Settings) -> tuple[RowSpec, ...]:
    a = doc.attributes
    _refuse(doc, "qos_policy_id", "QoS")
    net_type, physnet = a.get("provider:network_type"), a.get("provider:physical_network")
    ids = {"neutron:network_name": str(a.get("name") or "")}
    if a.get("mtu") is not None:
        ids["neutron:mtu"] = str(a["mtu"])
    if net_type:
        ids["neutron:provnet-network-type"] = str(net_type)
    if physnet:
        ids["neutron:provnet-physical-network"] = str(physnet)
    other_config = {"vlan-passthru": "true"} if a.get("vlan_transparent") else {}
    rows = [_row("Logical_Switch", "ls", {"name": ovn_name(doc.id), "other_config": other_config,
                                          "external_ids": _identity(doc, **ids)})]
    if net_type in ("vlan", "flat"):
        physnet = _need(doc, "provider:physical_network")
        tag = [int(_need(doc, "provider:segmentation_id"))] if net_type == "vlan" else []
        # A localnet port's VLAN is tag_request (ovn-nb(5)); tag is what northd copies from it.
        rows.append(_row("Logical_Switch_Port", "localnet", {
            "name": f"provnet-{doc.id}", "type": "localnet", "addresses": ["unknown"],
            "options": {"network_name": str(physnet)}, "tag_request": tag,
            "external_ids": _owned(_key(doc), **{"neutron:provnet-physical-network": str(physnet)})},
            parent=Slot(_key(doc), "ls", "ports")))
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
    _refuse(doc, "segment_id", "routed networks")
    if a.get("subnetpool_id") == "prefix_delegation":
        raise Unsupported(f"subnet {doc.id}: IPv6 prefix delegation (subnetpool_id 'prefix_delegation') is not "
                          "supported by the OVN backend yet")
    cidr = str(_need(doc, "cidr"))
    options: dict[str, str] = {}
    if a.get("enable_dhcp", True):
        options = _dhcp4(doc, cidr) if _version(cidr) == 4 else _dhcp6(doc)
    # Always a row, DHCP or not, so a port's reference to it never depends on the subnet's settings.
    ids = _identity(doc, subnet_id=doc.id, **{"neutron:network_id": str(_need(doc, "network_id"))})
    return (_row("DHCP_Options", "dhcp", {"cidr": cidr, "options": options, "external_ids": ids}),)


# -- ports ----------------------------------------------------------------------------------------------

ROUTER_INTERFACE_OWNERS = ("network:router_interface", "network:router_interface_distributed",
                           "network:ha_router_replicated_interface")
ROUTER_GATEWAY = "network:router_gateway"
FLOATING_IP_OWNER = "network:floatingip"
EXTERNAL_VNIC_TYPES = ("direct", "direct-physical", "macvtap", "baremetal")  # ML2/OVN: type=external


def _check_port(doc: ObjectDoc) -> None:
    a = doc.attributes
    _refuse(doc, "qos_policy_id", "QoS")
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
    network = ("network", str(_need(doc, "network_id")))
    owner = str(a.get("device_owner") or "")
    enabled = [bool(a.get("admin_state_up", True))]
    ids = {"neutron:port_name": str(a.get("name") or ""), "neutron:device_id": str(a.get("device_id") or ""),
           "neutron:device_owner": owner, "neutron:network_name": ovn_name(network[1])}
    parent = Slot(network, "ls", "ports")
    if owner == FLOATING_IP_OWNER:
        # ML2/OVN writes no switch port for a floating IP's port (its address lives in a NAT). The object
        # still needs a row to carry its identity and stamps: a disabled port with no address does nothing.
        return (_row("Logical_Switch_Port", "lsp", {"name": doc.id, "enabled": [False],
                                                   "external_ids": _identity(doc, **ids)}, parent=parent),)
    if owner in ROUTER_INTERFACE_OWNERS or owner == ROUTER_GATEWAY:
        options = {"router-port": lrp_name(doc.id)}
        if owner == ROUTER_GATEWAY:
            options["nat-addresses"] = "router"  # the gateway chassis answers ARP for the NAT addresses
        return (_row("Logical_Switch_Port", "lsp", {
            "name": doc.id, "type": "router", "addresses": ["router"], "options": options, "enabled": enabled,
            "external_ids": _identity(doc, **ids)}, parent=parent),)

    _check_port(doc)
    mac = str(_need(doc, "mac_address"))
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
            version = _version(str(ip["ip_address"]))
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
    return (_row("Logical_Switch_Port", "lsp", {
        "name": doc.id, "addresses": addresses, "port_security": port_security, "enabled": enabled,
        "options": options, "dhcpv4_options": dhcp[4], "dhcpv6_options": dhcp[6],
        "external_ids": _identity(doc, **ids)}, parent=parent, also_in=also_in),)


# -- security groups ------------------------------------------------------------------------------------


def _security_group(doc: ObjectDoc, settings: Settings) -> tuple[RowSpec, ...]:
    if doc.attributes.get("stateful") is False:
        # ML2/OVN writes a stateless group's ACLs allow-stateless; a rule's document does not carry its
        # group's flag, and allow-related would also pass the replies a stateless group drops.
        raise Unsupported(f"security_group {doc.id}: attribute 'stateful' false (a stateless group) is not "
                          "supported by the OVN backend yet")
    # ports and acls are container columns: the ports' and rules' own rows put themselves there.
    ids = _identity(doc, **{"neutron:security_group_id": doc.id})
    return (_row("Port_Group", "pg", {"name": pg_name(doc.id), "external_ids": ids}),)


# neutron-lib's IP_PROTOCOL_MAP (the backends may not import Neutron): what a rule's protocol name means.
PROTOCOL_NUMBERS: Mapping[str, int] = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1, "igmp": 2, "ip": 0, "ipip": 4,
    "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60,
    "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136,
    "vrrp": 112}
TRANSPORT = {6: "tcp", 17: "udp", 132: "sctp"}
ICMP = (1, 58)


def _protocol_number(doc: ObjectDoc) -> int | None:
    protocol = doc.attributes.get("protocol")
    if protocol is None or protocol == "any":
        return None
    text = str(protocol).lower()
    number = int(text) if text.isdigit() else PROTOCOL_NUMBERS.get(text)
    if number is None or not 0 <= number <= 255:
        raise Unsupported(f"security_group_rule {doc.id}: attribute 'protocol' {protocol!r} is not a protocol "
                          "name Neutron knows or a number from 0 to 255")
    return number


def _protocol_match(doc: ObjectDoc, icmp: str) -> str:
    """``acl_protocol_and_ports`` of ML2/OVN: the protocol and its port (or ICMP type/code) range."""
    number = _protocol_number(doc)
    if number is None:
        return ""
    low, high = (None if v is None else int(v)
                 for v in (doc.attributes.get("port_range_min"), doc.attributes.get("port_range_max")))
    if number in TRANSPORT:
        name = TRANSPORT[number]
        if low is not None and low == high:
            return f" && {name} && {name}.dst == {low}"
        return (f" && {name}" + ("" if low is None else f" && {name}.dst >= {low}")
                + ("" if high is None else f" && {name}.dst <= {high}"))
    if number in ICMP:  # the ethertype decides, as in ML2/OVN: protocol "icmp" on an IPv6 rule is icmp6
        return (f" && {icmp}" + ("" if low is None else f" && {icmp}.type == {low}")
                + ("" if high is None else f" && {icmp}.code == {high}"))
    return f" && ip.proto == {number}"


def acl_match(doc: ObjectDoc) -> str:
    """The match ML2/OVN's ``_add_sg_rule_acl_for_port_group`` builds for the rule, character for character."""
    a = doc.attributes
    ingress = a.get("direction") == "ingress"
    group = pg_name(str(_need(doc, "security_group_id")))
    ip, icmp = ("ip6", "icmp6") if a.get("ethertype") == "IPv6" else ("ip4", "icmp4")
    side = "src" if ingress else "dst"
    match = f"{'outport' if ingress else 'inport'} == @{group} && {ip}"
    if a.get("remote_ip_prefix"):
        try:  # Neutron's normalized_cidr: 10.0.0.5/24 means 10.0.0.0/24
            prefix = ipaddress.ip_network(str(a["remote_ip_prefix"]), strict=False)
        except ValueError:
            raise Unsupported(f"security_group_rule {doc.id}: attribute 'remote_ip_prefix' "
                              f"{a['remote_ip_prefix']!r} is not a prefix") from None
        match += f" && {ip}.{side} == {prefix}"
    if a.get("remote_group_id"):
        # The address set northd keeps for every port group: pg-<id>-ip4 with '-' made '_'.
        match += f" && {ip}.{side} == ${pg_name(str(a['remote_group_id']))}_{ip}"
    return match + _protocol_match(doc, icmp)


def _security_group_rule(doc: ObjectDoc, settings: Settings) -> tuple[RowSpec, ...]:
    _refuse(doc, "remote_address_group_id", "address groups")
    direction = _need(doc, "direction")
    if direction not in ("ingress", "egress"):
        raise Unsupported(f"security_group_rule {doc.id}: attribute 'direction' {direction!r} is neither "
                          "'ingress' nor 'egress'")
    group = str(doc.attributes["security_group_id"])
    # allow-related always: a rule's document does not carry its group's stateful flag, so stateless groups
    # (allow-stateless in ML2/OVN) are refused as a whole (_security_group).
    return (_row("ACL", "acl", {
        "priority": ACL_PRIORITY_ALLOW, "action": "allow-related", "match": acl_match(doc),
        "direction": "to-lport" if direction == "ingress" else "from-lport",
        "external_ids": _identity(doc, **{"neutron:security_group_rule_id": doc.id})},
        parent=Slot(("security_group", group), "pg", "acls")),)


def shared_rows() -> tuple[RowSpec, ...]:
    """``neutron_pg_drop`` and its two drop ACLs, exactly as ML2/OVN creates them (no external_ids), so an NB
    ML2/OVN initialised already holds them. Keyed by the group's name; the backend inserts them once and only
    mutates the group's ``ports`` afterwards."""
    acls = tuple(
        _row("ACL", f"{PG_DROP}:{direction}", {
            "priority": ACL_PRIORITY_DROP, "action": "drop", "direction": direction,
            "match": f"{port} == @{PG_DROP} && ip"}, parent=Slot(SHARED, PG_DROP, "acls"))
        for direction, port in (("from-lport", "inport"), ("to-lport", "outport")))
    return (_row("Port_Group", PG_DROP, {"name": PG_DROP}), *acls)


# -- routers --------------------------------------------------------------------------------------------


def _router(doc: ObjectDoc, settings: Settings) -> tuple[RowSpec, ...]:
    a = doc.attributes
    _refuse(doc, "distributed", "DVR: OVN routes centrally on the gateway chassis")
    key = _key(doc)
    ids = {"neutron:router_name": str(a.get("name") or "")}
    extra: list[RowSpec] = []
    for route in a.get("routes") or []:
        destination, nexthop = str(route["destination"]), str(route["nexthop"])
        extra.append(_row("Logical_Router_Static_Route", f"route:{destination}:{nexthop}", {
            "ip_prefix": destination, "nexthop": nexthop,
            "external_ids": _owned(key, **{"neutron:is_static_route": "true"})},
            parent=Slot(key, "lr", "static_routes")))
    gateway = a.get("gateway_port_id")
    if gateway and a.get("external_network_id"):
        extra += _gateway(doc, settings, str(gateway))
        snat = a.get("enable_snat", True) is not False  # Neutron's default (enable_snat_by_default)
        ids["neutron:gw_port_id"] = str(gateway)
        ids["converge:enable_snat"] = "true" if snat else "false"
        v4 = [n for n in a["gateway_networks"] if _version(n) == 4]
        if snat and v4:
            # The backend derives the router's SNAT rows (snat_rows) from this and its interfaces.
            ids["converge:snat_ip"] = str(ipaddress.ip_interface(v4[0]).ip)
    options = {"always_learn_from_arp_request": "false", "dynamic_neigh_routers": "true"}
    primary = _row("Logical_Router", "lr", {"name": ovn_name(doc.id), "enabled": [bool(a.get("admin_state_up", True))],
                                            "options": options, "external_ids": _identity(doc, **ids)})
    return (primary, *extra)


def _gateway(doc: ObjectDoc, settings: Settings, port_id: str) -> list[RowSpec]:
    """The gateway router port, its gateway chassis and default routes (ML2/OVN's ``_add_router_ext_gw``)."""
    key, a = _key(doc), doc.attributes
    networks = sorted(str(n) for n in _need(doc, "gateway_networks"))
    rows = [_row("Logical_Router_Port", "gw", {
        "name": lrp_name(port_id), "mac": str(_need(doc, "gateway_mac_address")), "networks": networks,
        "external_ids": _owned(key, **{"neutron:is_ext_gw": "True", "neutron:router_name": ovn_name(doc.id),
                                       "neutron:network_name": ovn_name(str(a["external_network_id"]))})},
        parent=Slot(key, "lr", "ports"))]
    for index, chassis in enumerate(settings.gateway_chassis):
        rows.append(_row("Gateway_Chassis", f"gwc:{chassis}", {
            "name": f"{lrp_name(port_id)}_{chassis}", "chassis_name": chassis,
            "priority": len(settings.gateway_chassis) - index, "external_ids": _owned(key)},
            parent=Slot(key, "gw", "gateway_chassis")))
    nexthops = sorted(str(n) for n in a.get("gateway_nexthops") or [])
    for version, prefix in ((4, "0.0.0.0/0"), (6, "::/0")):
        hop = next((n for n in nexthops if _version(n) == version), None)
        if hop is not None:
            rows.append(_row("Logical_Router_Static_Route", f"route:default{version}", {
                "ip_prefix": prefix, "nexthop": hop,
                "external_ids": _owned(key, **{"neutron:is_ext_gw": "true"})},
                parent=Slot(key, "lr", "static_routes")))
    return rows


def snat_rows(router_id: str, snat_ip: str, networks: Iterable[str]) -> tuple[RowSpec, ...]:
    """One ``snat`` NAT per IPv4 network attached to the router, translated for its gateway address.

    ``networks`` may be subnets' cidrs or router ports' ``ip/prefixlen``: both name the same network."""
    router: ObjectKey = ("router", router_id)
    cidrs = sorted({str(ipaddress.ip_network(n, strict=False)) for n in networks if _version(n) == 4},
                   key=lambda c: ipaddress.ip_network(c))
    return tuple(_row("NAT", f"snat:{cidr}", {
        "type": "snat", "external_ip": snat_ip, "logical_ip": cidr, "external_ids": _owned(router)},
        parent=Slot(router, "lr", "nat")) for cidr in cidrs)


def _router_interface(doc: ObjectDoc, settings: Settings) -> tuple[RowSpec, ...]:
    a = doc.attributes
    router = str(_need(doc, "router_id"))
    networks = sorted(str(n) for n in _need(doc, "networks"))  # an LRP needs at least one (min 1)
    subnets = sorted(str(s) for s in a.get("subnet_ids") or [a.get("subnet_id")] if s)
    ids = {"neutron:router_name": ovn_name(router), "neutron:is_ext_gw": "False",
           "neutron:subnet_ids": " ".join(subnets)}
    return (_row("Logical_Router_Port", "lrp", {
        "name": lrp_name(doc.id), "mac": str(_need(doc, "mac_address")), "networks": networks,
        "external_ids": _identity(doc, **ids)}, parent=Slot(("router", router), "lr", "ports")),)


def _floating_ip(doc: ObjectDoc, settings: Settings) -> tuple[RowSpec, ...]:
    a = doc.attributes
    if not (a.get("port_id") and a.get("router_id") and a.get("fixed_ip_address")):
        return ()  # not associated: nothing in NB (the backend keeps its stamp in the root's marker)
    _refuse(doc, "qos_policy_id", "QoS")
    router = str(a["router_id"])
    ids = {"neutron:fip_id": doc.id, "neutron:fip_port_id": str(a["port_id"]),
           "neutron:router_name": ovn_name(router),
           "neutron:fip_network_id": str(a.get("floating_network_id") or "")}
    # Centralized on the gateway chassis: no logical_port/external_mac, which would make it distributed.
    return (_row("NAT", "nat", {
        "type": "dnat_and_snat", "external_ip": str(_need(doc, "floating_ip_address")),
        "logical_ip": str(a["fixed_ip_address"]), "external_ids": _identity(doc, **ids)},
        parent=Slot(("router", router), "lr", "nat")),)


def _key(doc: ObjectDoc) -> ObjectKey:
    return (doc.kind.value, doc.id)


_BY_KIND: Mapping[Kind, Callable[[ObjectDoc, Settings], tuple[RowSpec, ...]]] = {
    Kind.NETWORK: _network,
    Kind.SUBNET: _subnet,
    Kind.PORT: _port,
    Kind.SECURITY_GROUP: _security_group,
    Kind.SECURITY_GROUP_RULE: _security_group_rule,
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
    return ObjectRows(key=_key(doc), rows=rows)
