"""Neutron resource dicts → Converge changes (pure; unit-tested without Neutron).

Which fields travel: what a controller needs to realise the resource — identity, references, addressing,
admin state, binding, security. Volatile bookkeeping (status, timestamps, revision_number, tenant_id,
tags) stays out, so the fingerprint changes only when the network does. Fields an extension adds only
after the precommit hooks (``extra_dhcp_opts``) stay out too: intent must not depend on which hook saw it.

``revision_number`` as the precommit hook sees it (before this transaction's own bump) becomes the
object's revision: it only orders writes (an older write landing late never replaces a newer desired
state). It is not Neutron's final number, which also moves when a child changes (a rule bumps its
group), with nothing for the controller to do.

Values without a canonical JSON form (a float in ``binding:profile``, say) are carried as strings rather
than failing the user's API call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from converge.core.ids import InvalidId, root_id
from converge.core.kinds import Kind
from converge.store.intent import Change
from converge.store.schema import JournalOp

FIELDS: dict[Kind, tuple[str, ...]] = {
    Kind.NETWORK: ("name", "description", "admin_state_up", "mtu", "shared", "router:external",
                   "provider:network_type", "provider:physical_network", "provider:segmentation_id",
                   "port_security_enabled", "availability_zone_hints", "qos_policy_id", "vlan_transparent",
                   "dns_domain"),
    Kind.SUBNET: ("name", "description", "network_id", "cidr", "ip_version", "gateway_ip", "enable_dhcp",
                  "allocation_pools", "dns_nameservers", "host_routes", "ipv6_ra_mode", "ipv6_address_mode",
                  "subnetpool_id", "segment_id", "service_types"),
    Kind.PORT: ("name", "description", "network_id", "mac_address", "fixed_ips", "admin_state_up",
                "device_owner", "device_id", "security_groups", "binding:host_id",
                "binding:vnic_type", "binding:profile", "port_security_enabled", "allowed_address_pairs",
                "qos_policy_id", "dns_name"),
    Kind.SECURITY_GROUP: ("name", "description", "stateful"),
    Kind.SECURITY_GROUP_RULE: ("security_group_id", "direction", "ethertype", "protocol", "port_range_min",
                               "port_range_max", "remote_ip_prefix", "remote_group_id",
                               "remote_address_group_id", "description"),
    # A router's gateway (external_network_id, enable_snat, external_fixed_ips) comes from
    # external_gateway_info only: some internal dicts also carry a top-level enable_snat the API hides.
    # The gateway_* fields are not Neutron's: l3.router_document adds them from the gateway port and its
    # subnets, as it adds mac_address and networks to a router interface (l3.interface_of).
    Kind.ROUTER: ("name", "description", "admin_state_up", "distributed", "ha", "routes",
                  "availability_zone_hints", "gateway_port_id", "gateway_mac_address", "gateway_networks",
                  "gateway_nexthops"),
    Kind.ROUTER_INTERFACE: ("router_id", "subnet_id", "subnet_ids", "port_id", "mac_address", "networks"),
    Kind.FLOATING_IP: ("floating_network_id", "floating_ip_address", "port_id", "fixed_ip_address", "router_id",
                       "description", "qos_policy_id"),
}


def plain(value: Any) -> Any:
    """A JSON value with a canonical form: floats become strings, keys strings."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


# Neutron creates some ports with no project at all: a router's gateway port and a floating IP's port
# (neutron/db/l3_db.py passes tenant_id ''). They live in this root rather than fail the user's call; a
# Keystone project id (hex) never collides with it, and a port's project never changes, so every hook of
# such a port names the same root.
NO_PROJECT = "no-project"


def root_of(resource: Mapping[str, Any]) -> str:
    project = str(resource.get("project_id") or resource.get("tenant_id") or NO_PROJECT)
    try:
        return root_id(project)
    except InvalidId:
        # Neutron takes any project id up to 255 characters; Keystone's are hex, but not every cloud's:
        # one that is not a valid root id maps to a stable one of its own.
        return "project-" + hashlib.sha256(project.encode()).hexdigest()[:40]


# Standard attributes some hooks see before Neutron fills them in (a port's create precommit has no
# description): absent means Neutron's default, so intent does not depend on which hook saw the resource.
DEFAULTS: dict[str, Any] = {"description": ""}


def attributes(kind: Kind, resource: Mapping[str, Any]) -> dict[str, Any]:
    # None and absent mean the same to a controller, and some hooks omit what others set to None.
    out = {f: plain(resource[f]) for f in FIELDS[kind] if resource.get(f) is not None}
    for field, default in DEFAULTS.items():
        if field in FIELDS[kind]:
            out.setdefault(field, default)
    if kind is Kind.ROUTER:
        gateway = resource.get("external_gateway_info") or {}
        for field, value in (("external_network_id", gateway.get("network_id")),
                             ("enable_snat", gateway.get("enable_snat")),
                             ("external_fixed_ips", plain(gateway.get("external_fixed_ips") or None))):
            if value is not None:
                out[field] = value
    if kind is Kind.PORT and "security_groups" in out:
        out["security_groups"] = sorted(out["security_groups"] or [])
    return out


def upsert(kind: Kind, resource: Mapping[str, Any], *, created: bool) -> Change:
    return Change.build(root=root_of(resource), kind_=kind.value, id_=resource["id"],
                        op=(JournalOp.CREATE if created else JournalOp.UPDATE).value,
                        attributes=attributes(kind, resource), revision=int(resource.get("revision_number") or 0))


def delete(kind: Kind, resource: Mapping[str, Any] | None, *, oid: str, root: str) -> Change:
    revision = int((resource or {}).get("revision_number") or 0)
    return Change.build(root=root_of(resource) if resource else root, kind_=kind.value, id_=oid,
                        op=JournalOp.DELETE.value, revision=revision)


def security_group_changes(group: Mapping[str, Any], *, created: bool) -> list[Change]:
    """A security group and the rules Neutron created with it (its default rules come this way)."""
    changes = [upsert(Kind.SECURITY_GROUP, group, created=created)]
    if created:
        changes += [upsert(Kind.SECURITY_GROUP_RULE, rule, created=True)
                    for rule in group.get("security_group_rules") or ()]
    return changes


def keys(changes: Iterable[Change]) -> list[tuple[str, str]]:
    return [(c.kind.value, c.id) for c in changes]
