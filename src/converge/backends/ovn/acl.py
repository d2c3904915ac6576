"""Security groups as ML2/OVN writes them: a ``Port_Group`` per group, an ``ACL`` per rule with ML2/OVN's
match (``neutron/common/ovn/acl.py``, character for character: the unit tests compare with Neutron's own
code), and the shared ``neutron_pg_drop`` group with its two drop ACLs. Pure; called by ``translate.py``
(dispatch) and ``apply.py`` (the shared rows, once).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from converge.backends.ovn.columns import (
    ACL_PRIORITY_ALLOW,
    ACL_PRIORITY_DROP,
    Settings,
    Unsupported,
    identity,
    need,
    pg_name,
    refuse,
    row,
)
from converge.backends.ovn.rows import PG_DROP, SHARED, RowSpec, Slot
from converge.core.canonical import ObjectDoc


def security_group(doc: ObjectDoc, settings: Settings) -> tuple[RowSpec, ...]:
    if doc.attributes.get("stateful") is False:
        # ML2/OVN writes a stateless group's ACLs allow-stateless; a rule's document does not carry its
        # group's flag, and allow-related would also pass the replies a stateless group drops.
        raise Unsupported(f"security_group {doc.id}: attribute 'stateful' false (a stateless group) is not "
                          "supported by the OVN backend yet")
    # ports and acls are container columns: the ports' and rules' own rows put themselves there.
    ids = identity(doc, **{"neutron:security_group_id": doc.id})
    return (row("Port_Group", "pg", {"name": pg_name(doc.id), "external_ids": ids}),)


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
    group = pg_name(str(need(doc, "security_group_id")))
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


def security_group_rule(doc: ObjectDoc, settings: Settings) -> tuple[RowSpec, ...]:
    refuse(doc, "remote_address_group_id", "address groups")
    direction = need(doc, "direction")
    if direction not in ("ingress", "egress"):
        raise Unsupported(f"security_group_rule {doc.id}: attribute 'direction' {direction!r} is neither "
                          "'ingress' nor 'egress'")
    group = str(doc.attributes["security_group_id"])
    # allow-related always: a rule's document does not carry its group's stateful flag, so stateless groups
    # (allow-stateless in ML2/OVN) are refused as a whole (_security_group).
    return (row("ACL", "acl", {
        "priority": ACL_PRIORITY_ALLOW, "action": "allow-related", "match": acl_match(doc),
        "direction": "to-lport" if direction == "ingress" else "from-lport",
        "external_ids": identity(doc, **{"neutron:security_group_rule_id": doc.id})},
        parent=Slot(("security_group", group), "pg", "acls")),)


def shared_rows() -> tuple[RowSpec, ...]:
    """``neutron_pg_drop`` and its two drop ACLs, exactly as ML2/OVN creates them (no external_ids), so an NB
    ML2/OVN initialised already holds them. Keyed by the group's name; the backend inserts them once and only
    mutates the group's ``ports`` afterwards."""
    acls = tuple(
        row("ACL", f"{PG_DROP}:{direction}", {
            "priority": ACL_PRIORITY_DROP, "action": "drop", "direction": direction,
            "match": f"{port} == @{PG_DROP} && ip"}, parent=Slot(SHARED, PG_DROP, "acls"))
        for direction, port in (("from-lport", "inport"), ("to-lport", "outport")))
    return (row("Port_Group", PG_DROP, {"name": PG_DROP}), *acls)
