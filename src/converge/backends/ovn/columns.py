"""What Converge writes to OVN NB: the columns it manages per table (with the schema default each takes
when a document says nothing), the container columns that list child rows, ML2/OVN's names, and the
helpers every translation uses to build a row. Shared by ``translate.py`` (networks, subnets, ports,
routers, floating IPs), ``acl.py`` (security groups and rules), ``replica.py`` and ``apply.py``.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from converge.backends.ovn.rows import ObjectKey, RowSpec, Slot
from converge.core.canonical import ObjectDoc


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


def row(table: str, key: str, columns: Mapping[str, Any], *, parent: Slot | None = None,
         also_in: tuple[Slot, ...] = ()) -> RowSpec:
    """A row with every managed column: ``columns`` over the table's defaults (fresh copies)."""
    unknown = set(columns) - set(_DEFAULTS[table])
    if unknown:  # a programming error, not a document's: every written column must be compared
        raise AssertionError(f"{table}: {sorted(unknown)} not in MANAGED")
    return RowSpec(table=table, key=key, columns={**copy.deepcopy(dict(_DEFAULTS[table])), **columns},
                   parent=parent, also_in=also_in)


def identity(doc: ObjectDoc, **neutron: str) -> dict[str, str]:
    """A primary row's external_ids: ML2/OVN's keys plus the object's identity (the backend adds root and stamps)."""
    return {**neutron, "converge:kind": doc.kind.value, "converge:id": doc.id}


def owned(owner: ObjectKey, **neutron: str) -> dict[str, str]:
    return {**neutron, "converge:owner": f"{owner[0]}/{owner[1]}"}


def need(doc: ObjectDoc, attribute: str) -> Any:
    value = doc.attributes.get(attribute)
    if value is None or value == "" or value == []:
        raise Unsupported(f"{doc.kind.value} {doc.id}: attribute {attribute!r} is missing or empty; the OVN "
                          "backend needs it")
    return value


def refuse(doc: ObjectDoc, attribute: str, why: str) -> None:
    if doc.attributes.get(attribute) not in (None, "", [], {}, False):
        raise Unsupported(f"{doc.kind.value} {doc.id}: attribute {attribute!r} is not supported by the OVN "
                          f"backend yet ({why})")


def ip_version(address: str) -> int:
    return ipaddress.ip_interface(address).version


def ovn_name(oid: str) -> str:
    """A switch's or router's name, ``neutron-<id>`` (ML2/OVN's ``ovn_name``)."""
    return f"neutron-{oid}"


def pg_name(security_group_id: str) -> str:
    return f"pg_{security_group_id.replace('-', '_')}"


def lrp_name(port_id: str) -> str:
    return f"lrp-{port_id}"



def key_of(doc: ObjectDoc) -> ObjectKey:
    return (doc.kind.value, doc.id)
