"""Converge documents → OVN NB rows (pure; no OVN running). Every row is also checked against the NB schema
OVN installs (/usr/share/ovn/ovn-nb.ovsschema): its columns exist, and each value has the shape python-ovs's
IDL gives that column (plain value, 0/1-element list, sorted set, string map, in range, in the enum)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from converge.backends.ovn import translate
from converge.backends.ovn.rows import PG_DROP, SHARED, ObjectRows, RowRef, RowSpec, Slot
from converge.backends.ovn.translate import CONTAINER_COLUMNS, MANAGED, Settings, Unsupported, object_rows
from converge.core.canonical import ObjectDoc
from converge.core.ids import ObjectId
from converge.core.kinds import Kind

SCHEMA_PATH = Path("/usr/share/ovn/ovn-nb.ovsschema")
GW = Settings(gateway_chassis=("gw-a", "gw-b"))

# The table of the row a Slot names, by its row key (the owner's own key for the shared group).
SLOT_TABLES = {"ls": "Logical_Switch", "pg": "Port_Group", "lr": "Logical_Router", "gw": "Logical_Router_Port",
               PG_DROP: "Port_Group"}


def doc(kind: Kind, oid: str, **attributes: Any) -> ObjectDoc:
    return ObjectDoc(kind=kind, id=ObjectId(oid), attributes=attributes)


def rows_of(d: ObjectDoc, s: Settings = GW) -> dict[str, RowSpec]:
    out = object_rows(d, s)
    assert out.key == (d.kind.value, d.id)
    check_rows(out.rows)
    return {r.key: r for r in out.rows}


# -- the schema check every test goes through -----------------------------------------------------------


_SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())["tables"] if SCHEMA_PATH.exists() else {}
pytestmark = pytest.mark.skipif(not _SCHEMA, reason="OVN's NB schema is not installed")


def _atom_ok(base: Any, value: Any) -> bool:
    base = {"type": base} if isinstance(base, str) else base
    kind = base["type"]
    if kind == "uuid":
        return isinstance(value, RowRef)
    if kind == "string":
        ok = isinstance(value, str) and len(value) <= base.get("maxLength", 1 << 31)
    elif kind == "integer":
        ok = (isinstance(value, int) and not isinstance(value, bool)
              and base.get("minInteger", -(1 << 63)) <= value <= base.get("maxInteger", 1 << 63))
    elif kind == "boolean":
        ok = isinstance(value, bool)
    else:
        ok = False
    enum = base.get("enum")
    return ok and (enum is None or value in enum[1])


def check_value(table: str, column: str, value: Any) -> None:
    ctype = _SCHEMA[table]["columns"][column]["type"]
    where = f"{table}.{column} = {value!r}"
    if isinstance(ctype, str) or ("min" not in ctype and "max" not in ctype and "value" not in ctype):
        key = ctype if isinstance(ctype, str) else ctype["key"]
        assert _atom_ok(key, value), f"{where}: expected one {key}"
        return
    low, high = ctype.get("min", 1), ctype.get("max", 1)
    if "value" in ctype:
        assert isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()), \
            f"{where}: expected a map of strings"
        assert low <= len(value), where
        return
    if low == 1 and high == 1:
        assert _atom_ok(ctype["key"], value), f"{where}: a required scalar is a plain value"
        return
    assert isinstance(value, list), f"{where}: an optional column or set is a list"
    assert low <= len(value) <= (len(value) if high == "unlimited" else high), f"{where}: size"
    assert all(_atom_ok(ctype["key"], v) for v in value), f"{where}: element type"
    if value and not isinstance(value[0], RowRef):
        assert value == sorted(set(value)), f"{where}: a set is a sorted list without duplicates"


def check_rows(rows: tuple[RowSpec, ...]) -> None:
    keys = [r.key for r in rows]
    assert len(keys) == len(set(keys)), f"row keys are unique: {keys}"
    for r in rows:
        table = _SCHEMA[r.table]
        assert set(r.columns) == set(MANAGED[r.table]), f"{r.key}: every managed column, no other"
        for column, value in r.columns.items():
            check_value(r.table, column, value)
        ids = r.columns["external_ids"]
        assert not {"converge:root", "converge:digest", "converge:rows"} & set(ids), "the backend stamps those"
        # Non-root rows need a container; root rows have none.
        assert (r.parent is None) == bool(table.get("isRoot")), f"{r.table} {r.key}: parent {r.parent}"
        for slot in ([r.parent] if r.parent else []) + list(r.also_in):
            container = SLOT_TABLES[slot.row]
            assert slot.column in CONTAINER_COLUMNS[container]
            assert _SCHEMA[container]["columns"][slot.column]["type"]["key"]["refTable"] == r.table


def check_object(out: ObjectRows) -> None:
    """A primary row carries the identity; extra rows name their owner."""
    kind, oid = out.key
    first, *rest = out.rows
    assert first.columns["external_ids"]["converge:kind"] == kind
    assert first.columns["external_ids"]["converge:id"] == oid
    for r in rest:
        assert r.columns["external_ids"]["converge:owner"] == f"{kind}/{oid}"


def test_managed_and_container_columns_exist_in_the_schema_and_do_not_overlap():
    schema = _SCHEMA
    for table, columns in MANAGED.items():
        assert set(columns) <= set(schema[table]["columns"]), table
        assert not set(columns) & set(CONTAINER_COLUMNS.get(table, ())), table
    for table, columns in CONTAINER_COLUMNS.items():
        for column in columns:
            ctype = schema[table]["columns"][column]["type"]
            assert ctype["key"]["type"] == "uuid" and ctype["max"] == "unlimited", (table, column)
    # What OVN writes itself is never compared (northd would look like drift).
    assert not {"up", "tag", "dynamic_addresses"} & set(MANAGED["Logical_Switch_Port"])


# -- networks and subnets -------------------------------------------------------------------------------


def test_a_network_is_a_switch_named_like_ml2_ovn():
    rows = rows_of(doc(Kind.NETWORK, "n1", name="private", mtu=1442, **{"provider:network_type": "geneve",
                                                                         "provider:segmentation_id": 7}))
    assert list(rows) == ["ls"]
    ls = rows["ls"].columns
    assert ls["name"] == "neutron-n1" and ls["other_config"] == {}
    assert ls["external_ids"] == {"neutron:network_name": "private", "neutron:mtu": "1442",
                                  "neutron:provnet-network-type": "geneve", "converge:kind": "network",
                                  "converge:id": "n1"}


def test_a_vlan_provider_network_gets_a_localnet_port_with_the_vlan_in_tag_request():
    d = doc(Kind.NETWORK, "n1", **{"provider:network_type": "vlan", "provider:physical_network": "physnet1",
                                   "provider:segmentation_id": 100})
    rows = rows_of(d)
    check_object(object_rows(d, GW))
    localnet = rows["localnet"]
    assert localnet.table == "Logical_Switch_Port" and localnet.parent == Slot(("network", "n1"), "ls", "ports")
    assert localnet.columns["name"] == "provnet-n1" and localnet.columns["type"] == "localnet"
    assert localnet.columns["addresses"] == ["unknown"] and localnet.columns["options"] == {"network_name": "physnet1"}
    assert localnet.columns["tag_request"] == [100]


def test_a_flat_provider_network_has_an_untagged_localnet_port():
    rows = rows_of(doc(Kind.NETWORK, "n1", **{"provider:network_type": "flat",
                                              "provider:physical_network": "physnet1"}))
    assert rows["localnet"].columns["tag_request"] == []
    assert rows["ls"].columns["external_ids"]["neutron:provnet-physical-network"] == "physnet1"


def test_a_vlan_network_without_physical_network_is_refused_naming_it():
    with pytest.raises(Unsupported, match="provider:physical_network"):
        object_rows(doc(Kind.NETWORK, "n1", **{"provider:network_type": "vlan",
                                               "provider:segmentation_id": 5}), GW)


def test_a_vlan_transparent_network_passes_vlans():
    assert rows_of(doc(Kind.NETWORK, "n1", vlan_transparent=True))["ls"].columns["other_config"] == {
        "vlan-passthru": "true"}


SUBNET4 = dict(network_id="n1", cidr="10.0.0.0/24", ip_version=4, gateway_ip="10.0.0.1", enable_dhcp=True,
               dns_nameservers=["8.8.8.8", "1.1.1.1"], host_routes=[])


def test_an_ipv4_subnet_is_dhcp_options_as_ml2_ovn_writes_them():
    dhcp = rows_of(doc(Kind.SUBNET, "s1", **SUBNET4))["dhcp"]
    assert dhcp.table == "DHCP_Options" and dhcp.columns["cidr"] == "10.0.0.0/24"
    options = dhcp.columns["options"]
    assert options == {"server_id": "10.0.0.1", "server_mac": translate.server_mac("s1"), "lease_time": "43200",
                       "router": "10.0.0.1", "dns_server": "{8.8.8.8, 1.1.1.1}"}
    assert dhcp.columns["external_ids"] == {"subnet_id": "s1", "neutron:network_id": "n1",
                                            "converge:kind": "subnet", "converge:id": "s1"}


def test_the_server_mac_is_stable_locally_administered_and_unicast():
    mac = translate.server_mac("s1")
    assert mac == translate.server_mac("s1") != translate.server_mac("s2")
    first = int(mac.split(":")[0], 16)
    assert first & 0b10 and not first & 0b01 and len(mac.split(":")) == 6


def test_host_routes_become_classless_static_routes_with_the_default_route_last():
    options = rows_of(doc(Kind.SUBNET, "s1", **{**SUBNET4, "host_routes": [
        {"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}]}))["dhcp"].columns["options"]
    assert options["classless_static_route"] == "{192.168.0.0/16,10.0.0.254, 0.0.0.0/0,10.0.0.1}"


def test_a_subnet_without_gateway_serves_dhcp_from_its_first_host_and_announces_no_router():
    options = rows_of(doc(Kind.SUBNET, "s1", **{**SUBNET4, "gateway_ip": None, "dns_nameservers": ["0.0.0.0"]})
                      )["dhcp"].columns["options"]
    assert options["server_id"] == "10.0.0.1" and "router" not in options
    assert "dns_server" not in options  # 0.0.0.0: announce no resolver at all (Neutron's convention)


def test_a_subnet_without_dhcp_still_has_its_row_with_no_options():
    dhcp = rows_of(doc(Kind.SUBNET, "s1", **{**SUBNET4, "enable_dhcp": False}))["dhcp"]
    assert dhcp.columns["options"] == {} and dhcp.columns["cidr"] == "10.0.0.0/24"


@pytest.mark.parametrize(("mode", "expected"), [
    ("dhcpv6-stateful", {"server_id": translate.server_mac("s6"), "dns_server": "{2001:4860:4860::8888}"}),
    ("dhcpv6-stateless", {"server_id": translate.server_mac("s6"), "dns_server": "{2001:4860:4860::8888}",
                          "dhcpv6_stateless": "true"}),
    ("slaac", {}),
    (None, {}),
])
def test_ipv6_subnets_get_dhcpv6_options_only_in_dhcpv6_modes(mode, expected):
    attrs = dict(network_id="n1", cidr="2001:db8::/64", ip_version=6, gateway_ip="2001:db8::1", enable_dhcp=True,
                 dns_nameservers=["2001:4860:4860::8888"], ipv6_address_mode=mode)
    assert rows_of(doc(Kind.SUBNET, "s6", **attrs))["dhcp"].columns["options"] == expected


@pytest.mark.parametrize(("attrs", "named"), [
    ({"segment_id": "seg1"}, "segment_id"),
    ({"subnetpool_id": "prefix_delegation"}, "prefix delegation"),
])
def test_routed_network_subnets_and_prefix_delegation_are_refused(attrs, named):
    with pytest.raises(Unsupported, match=named):
        object_rows(doc(Kind.SUBNET, "s1", **{**SUBNET4, **attrs}), GW)


# -- ports ----------------------------------------------------------------------------------------------

PORT = dict(network_id="n1", name="vm", mac_address="fa:16:3e:00:00:01", admin_state_up=True,
            device_owner="compute:nova", device_id="vm-1", security_groups=["sg2", "sg1"],
            port_security_enabled=True, allowed_address_pairs=[], **{"binding:host_id": "compute-1"},
            fixed_ips=[{"subnet_id": "s1", "ip_address": "10.0.0.5"},
                       {"subnet_id": "s6", "ip_address": "2001:db8::5"}])


def test_a_vm_port_is_a_switch_port_with_addresses_security_groups_and_dhcp():
    d = doc(Kind.PORT, "p1", **PORT)
    lsp = rows_of(d)["lsp"]
    assert lsp.parent == Slot(("network", "n1"), "ls", "ports")
    c = lsp.columns
    assert c["name"] == "p1" and c["type"] == "" and c["enabled"] == [True]
    assert c["addresses"] == ["fa:16:3e:00:00:01 10.0.0.5 2001:db8::5"]
    assert c["port_security"] == ["fa:16:3e:00:00:01 10.0.0.5 2001:db8::5"]
    assert c["options"] == {"requested-chassis": "compute-1"}
    assert c["dhcpv4_options"] == [RowRef(("subnet", "s1"), "dhcp")]
    assert c["dhcpv6_options"] == [RowRef(("subnet", "s6"), "dhcp")]
    assert lsp.also_in == (Slot(SHARED, PG_DROP, "ports"), Slot(("security_group", "sg1"), "pg", "ports"),
                           Slot(("security_group", "sg2"), "pg", "ports"))
    assert c["external_ids"] == {"neutron:port_name": "vm", "neutron:device_id": "vm-1",
                                 "neutron:device_owner": "compute:nova", "neutron:network_name": "neutron-n1",
                                 "neutron:security_group_ids": "sg1 sg2", "converge:kind": "port",
                                 "converge:id": "p1"}


def test_an_unbound_down_port_has_no_requested_chassis_and_is_disabled():
    c = rows_of(doc(Kind.PORT, "p1", **{**PORT, "binding:host_id": "", "admin_state_up": False}))["lsp"].columns
    assert c["options"] == {} and c["enabled"] == [False]


def test_allowed_address_pairs_widen_port_security_as_ml2_ovn_does():
    pairs = [{"ip_address": "10.0.0.100", "mac_address": "fa:16:3e:00:00:01"},  # same MAC: joins the main entry
             {"ip_address": "10.0.0.0/28", "mac_address": "fa:16:3e:00:00:01"},
             {"ip_address": "10.0.0.200", "mac_address": "00:00:5e:00:01:07"},  # another MAC: its own entry
             {"ip_address": "10.0.0.201"}]  # no MAC: the port's
    c = rows_of(doc(Kind.PORT, "p1", **{**PORT, "allowed_address_pairs": pairs}))["lsp"].columns
    assert c["port_security"] == [
        "00:00:5e:00:01:07 10.0.0.200",
        "fa:16:3e:00:00:01 10.0.0.5 2001:db8::5 10.0.0.100 10.0.0.0/28 10.0.0.201"]
    # The VRRP MAC is the port's too, so frames to it are delivered here.
    assert c["addresses"] == ["00:00:5e:00:01:07", "fa:16:3e:00:00:01 10.0.0.5 2001:db8::5"]


def test_a_port_without_port_security_takes_any_mac_and_joins_no_group():
    lsp = rows_of(doc(Kind.PORT, "p1", **{**PORT, "port_security_enabled": False, "security_groups": [],
                                          "allowed_address_pairs": []}))["lsp"]
    assert lsp.columns["port_security"] == [] and lsp.also_in == ()
    assert lsp.columns["addresses"] == ["fa:16:3e:00:00:01 10.0.0.5 2001:db8::5", "unknown"]
    assert lsp.columns["dhcpv4_options"] == [RowRef(("subnet", "s1"), "dhcp")]  # DHCP still served
    assert "neutron:security_group_ids" not in lsp.columns["external_ids"]


def test_a_port_without_addresses_has_only_its_mac():
    c = rows_of(doc(Kind.PORT, "p1", **{**PORT, "fixed_ips": []}))["lsp"].columns
    assert c["addresses"] == c["port_security"] == ["fa:16:3e:00:00:01"]
    assert c["dhcpv4_options"] == c["dhcpv6_options"] == []


def test_an_ipv6_only_port_has_no_dhcpv4_options():
    c = rows_of(doc(Kind.PORT, "p1", **{**PORT, "fixed_ips": [{"subnet_id": "s6", "ip_address": "2001:db8::5"}]})
                )["lsp"].columns
    assert c["dhcpv4_options"] == [] and c["dhcpv6_options"] == [RowRef(("subnet", "s6"), "dhcp")]


@pytest.mark.parametrize("owner", ["network:router_interface", "network:router_interface_distributed",
                                   "network:ha_router_replicated_interface"])
def test_a_router_interface_port_is_a_router_type_switch_port(owner):
    lsp = rows_of(doc(Kind.PORT, "p1", **{**PORT, "device_owner": owner}))["lsp"]
    c = lsp.columns
    assert (c["type"], c["addresses"], c["options"]) == ("router", ["router"], {"router-port": "lrp-p1"})
    assert c["port_security"] == [] and c["dhcpv4_options"] == [] and lsp.also_in == ()


def test_a_router_gateway_port_also_announces_the_nat_addresses():
    lsp = rows_of(doc(Kind.PORT, "gw1", **{**PORT, "network_id": "ext", "device_owner": "network:router_gateway"}))[
        "lsp"]
    assert lsp.columns["options"] == {"router-port": "lrp-gw1", "nat-addresses": "router"}
    assert lsp.columns["type"] == "router" and lsp.parent == Slot(("network", "ext"), "ls", "ports")


def test_a_floating_ip_port_is_a_disabled_port_that_does_nothing():
    lsp = rows_of(doc(Kind.PORT, "fp", network_id="ext", device_owner="network:floatingip",
                      mac_address="fa:16:3e:00:00:09", fixed_ips=[{"subnet_id": "es", "ip_address": "172.24.4.9"}]))[
        "lsp"]
    c = lsp.columns
    assert (c["enabled"], c["addresses"], c["type"], c["port_security"]) == ([False], [], "", [])
    assert c["options"] == {} and c["dhcpv4_options"] == [] and lsp.also_in == ()


def test_a_dhcp_agent_port_is_a_plain_port_without_port_security_or_dhcp():
    lsp = rows_of(doc(Kind.PORT, "d1", **{**PORT, "device_owner": "network:dhcp", "security_groups": []}))["lsp"]
    c = lsp.columns
    assert c["type"] == "" and c["port_security"] == [] and lsp.also_in == ()
    assert c["addresses"] == ["fa:16:3e:00:00:01 10.0.0.5 2001:db8::5", "unknown"]
    assert c["dhcpv4_options"] == [] and c["dhcpv6_options"] == []


@pytest.mark.parametrize(("attrs", "named"), [
    ({"qos_policy_id": "q1"}, "qos_policy_id"),
    ({"device_owner": "trunk:subport"}, "trunk"),
    ({"binding:profile": {"parent_name": "p0", "tag": 5}}, "binding:profile"),
    ({"binding:vnic_type": "baremetal"}, "binding:vnic_type"),
    ({"binding:vnic_type": "direct"}, "binding:vnic_type"),
    ({"mac_address": None}, "mac_address"),
])
def test_ports_the_backend_cannot_express_are_refused_naming_the_attribute(attrs, named):
    with pytest.raises(Unsupported, match=named):
        object_rows(doc(Kind.PORT, "p1", **{**PORT, **attrs}), GW)


def test_a_switchdev_direct_port_is_an_ordinary_port():
    attrs = {**PORT, "binding:vnic_type": "direct", "binding:profile": {"capabilities": ["switchdev"]}}
    assert rows_of(doc(Kind.PORT, "p1", **attrs))["lsp"].columns["external_ids"]["neutron:vnic_type"] == "direct"


# -- security groups ------------------------------------------------------------------------------------


def test_a_security_group_is_a_port_group_named_with_underscores():
    pg = rows_of(doc(Kind.SECURITY_GROUP, "5e1-ab-c", name="web", stateful=True))["pg"]
    assert pg.columns == {"name": "pg_5e1_ab_c", "external_ids": {
        "neutron:security_group_id": "5e1-ab-c", "converge:kind": "security_group", "converge:id": "5e1-ab-c"}}


def test_a_stateless_group_is_refused_rather_than_made_stateful():
    with pytest.raises(Unsupported, match="stateful"):
        object_rows(doc(Kind.SECURITY_GROUP, "sg1", stateful=False), GW)


def rule(**attrs: Any) -> ObjectDoc:
    return doc(Kind.SECURITY_GROUP_RULE, "r1", **{"security_group_id": "sg-1", "direction": "ingress",
                                                   "ethertype": "IPv4", **attrs})


def match(**attrs: Any) -> str:
    return rows_of(rule(**attrs))["acl"].columns["match"]


def test_a_rule_is_an_allow_related_acl_on_its_groups_port_group():
    acl = rows_of(rule(protocol="tcp", port_range_min=22, port_range_max=22))["acl"]
    assert acl.parent == Slot(("security_group", "sg-1"), "pg", "acls")
    c = acl.columns
    assert (c["priority"], c["action"], c["direction"]) == (1002, "allow-related", "to-lport")
    assert c["match"] == "outport == @pg_sg_1 && ip4 && tcp && tcp.dst == 22"
    assert (c["name"], c["log"], c["severity"], c["meter"], c["label"]) == ([], False, [], [], 0)
    assert c["external_ids"] == {"neutron:security_group_rule_id": "r1", "converge:kind": "security_group_rule",
                                 "converge:id": "r1"}


@pytest.mark.parametrize(("attrs", "expected"), [
    # ingress / egress, both ethertypes
    ({}, "outport == @pg_sg_1 && ip4"),
    ({"direction": "egress"}, "inport == @pg_sg_1 && ip4"),
    ({"ethertype": "IPv6"}, "outport == @pg_sg_1 && ip6"),
    ({"direction": "egress", "ethertype": "IPv6"}, "inport == @pg_sg_1 && ip6"),
    # remote prefix (normalised as Neutron's normalized_cidr) vs remote group
    ({"remote_ip_prefix": "10.1.2.3/16"}, "outport == @pg_sg_1 && ip4 && ip4.src == 10.1.0.0/16"),
    ({"direction": "egress", "remote_ip_prefix": "0.0.0.0/0"}, "inport == @pg_sg_1 && ip4 && ip4.dst == 0.0.0.0/0"),
    ({"ethertype": "IPv6", "remote_ip_prefix": "2001:db8::/32"},
     "outport == @pg_sg_1 && ip6 && ip6.src == 2001:db8::/32"),
    ({"remote_group_id": "sg-2"}, "outport == @pg_sg_1 && ip4 && ip4.src == $pg_sg_2_ip4"),
    ({"direction": "egress", "ethertype": "IPv6", "remote_group_id": "sg-2"},
     "inport == @pg_sg_1 && ip6 && ip6.dst == $pg_sg_2_ip6"),
    # port ranges
    ({"protocol": "tcp", "port_range_min": 1, "port_range_max": 65535},
     "outport == @pg_sg_1 && ip4 && tcp && tcp.dst >= 1 && tcp.dst <= 65535"),
    ({"protocol": "udp", "port_range_min": 53, "port_range_max": 53},
     "outport == @pg_sg_1 && ip4 && udp && udp.dst == 53"),
    ({"protocol": "sctp"}, "outport == @pg_sg_1 && ip4 && sctp"),
    ({"protocol": "6", "port_range_min": 80, "port_range_max": 81},
     "outport == @pg_sg_1 && ip4 && tcp && tcp.dst >= 80 && tcp.dst <= 81"),
    # icmp: type and code from the port range; the ethertype picks icmp4/icmp6
    ({"protocol": "icmp", "port_range_min": 8, "port_range_max": 0},
     "outport == @pg_sg_1 && ip4 && icmp4 && icmp4.type == 8 && icmp4.code == 0"),
    ({"protocol": "icmp"}, "outport == @pg_sg_1 && ip4 && icmp4"),
    ({"ethertype": "IPv6", "protocol": "ipv6-icmp", "port_range_min": 128},
     "outport == @pg_sg_1 && ip6 && icmp6 && icmp6.type == 128"),
    ({"ethertype": "IPv6", "protocol": "icmp"}, "outport == @pg_sg_1 && ip6 && icmp6"),
    # other protocols by number, "any" and none
    ({"protocol": "gre"}, "outport == @pg_sg_1 && ip4 && ip.proto == 47"),
    ({"protocol": "47"}, "outport == @pg_sg_1 && ip4 && ip.proto == 47"),
    ({"protocol": "any"}, "outport == @pg_sg_1 && ip4"),
    ({"protocol": None}, "outport == @pg_sg_1 && ip4"),
    # everything at once, in ML2/OVN's order
    ({"direction": "egress", "remote_ip_prefix": "10.0.0.0/8", "protocol": "udp", "port_range_min": 1000},
     "inport == @pg_sg_1 && ip4 && ip4.dst == 10.0.0.0/8 && udp && udp.dst >= 1000"),
])
def test_rule_matches_are_ml2_ovns(attrs, expected):
    assert match(**attrs) == expected


def test_an_egress_rule_is_a_from_lport_acl():
    assert rows_of(rule(direction="egress"))["acl"].columns["direction"] == "from-lport"


@pytest.mark.parametrize(("attrs", "named"), [
    ({"remote_address_group_id": "ag1"}, "remote_address_group_id"),
    ({"protocol": "bogus"}, "protocol"),
    ({"protocol": "300"}, "protocol"),
    ({"direction": None}, "direction"),
    ({"remote_ip_prefix": "not-a-prefix"}, "remote_ip_prefix"),
])
def test_rules_the_backend_cannot_express_are_refused_naming_the_attribute(attrs, named):
    with pytest.raises(Unsupported, match=named):
        object_rows(rule(**attrs), GW)


def test_the_shared_drop_group_and_its_acls_are_ml2_ovns():
    rows = translate.shared_rows()
    check_rows(rows)
    pg, *acls = rows
    assert (pg.table, pg.key, pg.columns["name"], pg.parent) == ("Port_Group", PG_DROP, PG_DROP, None)
    assert {(a.columns["direction"], a.columns["match"]) for a in acls} == {
        ("from-lport", "inport == @neutron_pg_drop && ip"), ("to-lport", "outport == @neutron_pg_drop && ip")}
    for acl in acls:
        assert (acl.columns["priority"], acl.columns["action"]) == (1001, "drop")
        assert acl.parent == Slot(SHARED, PG_DROP, "acls")


# -- routers --------------------------------------------------------------------------------------------

ROUTER = dict(name="edge", admin_state_up=True, routes=[{"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}],
              external_network_id="ext", enable_snat=True, gateway_port_id="gw1",
              gateway_mac_address="fa:16:3e:00:00:0a", gateway_networks=["172.24.4.10/24", "2001:db8:ff::10/64"],
              gateway_nexthops=["172.24.4.1", "2001:db8:ff::1"])


def test_a_router_is_a_logical_router_with_routes_gateway_port_chassis_and_default_routes():
    d = doc(Kind.ROUTER, "r1", **ROUTER)
    check_object(object_rows(d, GW))
    rows = rows_of(d)
    lr = rows["lr"].columns
    assert lr["name"] == "neutron-r1" and lr["enabled"] == [True]
    assert lr["options"] == {"always_learn_from_arp_request": "false", "dynamic_neigh_routers": "true"}
    assert lr["external_ids"] == {"neutron:router_name": "edge", "neutron:gw_port_id": "gw1",
                                  "converge:enable_snat": "true", "converge:snat_ip": "172.24.4.10",
                                  "converge:kind": "router", "converge:id": "r1"}
    route = rows["route:192.168.0.0/16:10.0.0.254"]
    assert (route.columns["ip_prefix"], route.columns["nexthop"]) == ("192.168.0.0/16", "10.0.0.254")
    assert route.parent == Slot(("router", "r1"), "lr", "static_routes")
    gw = rows["gw"]
    assert gw.parent == Slot(("router", "r1"), "lr", "ports")
    assert (gw.columns["name"], gw.columns["mac"]) == ("lrp-gw1", "fa:16:3e:00:00:0a")
    assert gw.columns["networks"] == ["172.24.4.10/24", "2001:db8:ff::10/64"]
    assert gw.columns["external_ids"]["neutron:is_ext_gw"] == "True"
    chassis = [(r.columns["name"], r.columns["chassis_name"], r.columns["priority"], r.parent)
               for k, r in rows.items() if k.startswith("gwc:")]
    assert chassis == [("lrp-gw1_gw-a", "gw-a", 2, Slot(("router", "r1"), "gw", "gateway_chassis")),
                       ("lrp-gw1_gw-b", "gw-b", 1, Slot(("router", "r1"), "gw", "gateway_chassis"))]
    assert (rows["route:default4"].columns["ip_prefix"], rows["route:default4"].columns["nexthop"]) == (
        "0.0.0.0/0", "172.24.4.1")
    assert (rows["route:default6"].columns["ip_prefix"], rows["route:default6"].columns["nexthop"]) == (
        "::/0", "2001:db8:ff::1")
    assert rows["route:default4"].columns["output_port"] == []


def test_a_router_without_snat_has_no_snat_ip():
    ids = rows_of(doc(Kind.ROUTER, "r1", **{**ROUTER, "enable_snat": False}))["lr"].columns["external_ids"]
    assert ids["converge:enable_snat"] == "false" and "converge:snat_ip" not in ids


def test_a_router_without_gateway_port_id_has_no_gateway_rows():
    attrs = {k: v for k, v in ROUTER.items() if not k.startswith("gateway_")}
    rows = rows_of(doc(Kind.ROUTER, "r1", **attrs))
    assert set(rows) == {"lr", "route:192.168.0.0/16:10.0.0.254"}
    assert set(rows["lr"].columns["external_ids"]) == {"neutron:router_name", "converge:kind", "converge:id"}


def test_a_gateway_without_chassis_settings_or_ipv6_nexthop_has_fewer_rows():
    rows = rows_of(doc(Kind.ROUTER, "r1", **{**ROUTER, "gateway_nexthops": ["172.24.4.1"], "admin_state_up": False}),
                   Settings())
    assert set(rows) == {"lr", "gw", "route:default4", "route:192.168.0.0/16:10.0.0.254"}
    assert rows["lr"].columns["enabled"] == [False]


@pytest.mark.parametrize(("missing", "value"), [("gateway_mac_address", None), ("gateway_networks", None),
                                                ("gateway_networks", [])])  # an LRP has at least one network
def test_a_gateway_missing_its_addresses_is_refused_naming_them(missing, value):
    with pytest.raises(Unsupported, match=missing):
        object_rows(doc(Kind.ROUTER, "r1", **{**ROUTER, missing: value}), GW)


def test_a_distributed_router_is_refused():
    with pytest.raises(Unsupported, match="distributed"):
        object_rows(doc(Kind.ROUTER, "r1", **{**ROUTER, "distributed": True}), GW)


def test_snat_rows_are_one_nat_per_ipv4_network_of_the_router():
    rows = translate.snat_rows("r1", "172.24.4.10", ["10.0.1.1/24", "10.0.0.0/24", "2001:db8::1/64", "10.0.0.1/24"])
    check_rows(rows)
    assert [r.key for r in rows] == ["snat:10.0.0.0/24", "snat:10.0.1.0/24"]
    for r in rows:
        assert r.parent == Slot(("router", "r1"), "lr", "nat")
        assert (r.columns["type"], r.columns["external_ip"]) == ("snat", "172.24.4.10")
        assert r.columns["logical_port"] == r.columns["external_mac"] == []
        assert r.columns["external_ids"] == {"converge:owner": "router/r1"}
    assert rows[0].columns["logical_ip"] == "10.0.0.0/24"


def test_a_router_interface_is_a_router_port_named_lrp():
    d = doc(Kind.ROUTER_INTERFACE, "p1", router_id="r1", subnet_id="s1", subnet_ids=["s6", "s1"], port_id="p1",
            mac_address="fa:16:3e:00:00:01", networks=["2001:db8::1/64", "10.0.0.1/24"])
    lrp = rows_of(d)["lrp"]
    assert lrp.parent == Slot(("router", "r1"), "lr", "ports")
    c = lrp.columns
    assert (c["name"], c["mac"], c["networks"]) == ("lrp-p1", "fa:16:3e:00:00:01", ["10.0.0.1/24", "2001:db8::1/64"])
    assert c["external_ids"] == {"neutron:router_name": "neutron-r1", "neutron:is_ext_gw": "False",
                                 "neutron:subnet_ids": "s1 s6", "converge:kind": "router_interface",
                                 "converge:id": "p1"}


@pytest.mark.parametrize(("missing", "value"), [("mac_address", None), ("networks", None), ("networks", [])])
def test_a_router_interface_missing_its_addresses_is_refused_naming_them(missing, value):
    attrs = dict(router_id="r1", subnet_id="s1", port_id="p1", mac_address="fa:16:3e:00:00:01",
                 networks=["10.0.0.1/24"])
    attrs[missing] = value
    with pytest.raises(Unsupported, match=missing):
        object_rows(doc(Kind.ROUTER_INTERFACE, "p1", **attrs), GW)


FIP = dict(floating_network_id="ext", floating_ip_address="172.24.4.20", port_id="vm1", fixed_ip_address="10.0.0.5",
           router_id="r1", description="")


def test_an_associated_floating_ip_is_a_centralized_dnat_and_snat():
    nat = rows_of(doc(Kind.FLOATING_IP, "f1", **FIP))["nat"]
    assert nat.parent == Slot(("router", "r1"), "lr", "nat")
    c = nat.columns
    assert (c["type"], c["external_ip"], c["logical_ip"]) == ("dnat_and_snat", "172.24.4.20", "10.0.0.5")
    assert c["logical_port"] == c["external_mac"] == []
    assert c["external_ids"]["neutron:fip_id"] == "f1" and c["external_ids"]["converge:kind"] == "floating_ip"


@pytest.mark.parametrize("unset", ["port_id", "router_id", "fixed_ip_address"])
def test_an_unassociated_floating_ip_has_no_rows(unset):
    assert object_rows(doc(Kind.FLOATING_IP, "f1", **{**FIP, unset: None}), GW).rows == ()


# -- every kind: determinism and shape ------------------------------------------------------------------

EVERY_KIND = [
    doc(Kind.NETWORK, "n1", **{"provider:network_type": "vlan", "provider:physical_network": "p",
                               "provider:segmentation_id": 4095}),
    doc(Kind.SUBNET, "s1", **SUBNET4),
    doc(Kind.PORT, "p1", **PORT),
    doc(Kind.SECURITY_GROUP, "sg1"),
    rule(protocol="tcp", port_range_min=1, port_range_max=2, remote_group_id="sg2"),
    doc(Kind.ROUTER, "r1", **ROUTER),
    doc(Kind.ROUTER_INTERFACE, "p2", router_id="r1", subnet_id="s1", mac_address="fa:16:3e:00:00:02",
        networks=["10.0.0.1/24"]),
    doc(Kind.FLOATING_IP, "f1", **FIP),
]


@pytest.mark.parametrize("d", EVERY_KIND, ids=lambda d: d.kind.value)
def test_every_kind_translates_to_the_same_rows_twice_with_identity_on_the_primary(d):
    first, second = object_rows(d, GW), object_rows(d, GW)
    assert first == second and first.rows
    check_rows(first.rows)
    check_object(first)


def test_every_kind_is_translated():
    assert {d.kind for d in EVERY_KIND} == set(Kind)


ips4 = st.builds(lambda a, b: f"10.0.{a}.{b}", st.integers(0, 255), st.integers(1, 254))
ips6 = st.builds(lambda a: f"2001:db8::{a:x}", st.integers(1, 0xffff))
macs = st.builds(lambda b: "fa:16:3e:" + ":".join(f"{x:02x}" for x in b), st.binary(min_size=3, max_size=3))
names = st.text(alphabet="abcdef0123456789-", min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(ips=st.lists(st.one_of(ips4, ips6), max_size=4, unique=True), mac=macs, secured=st.booleans(),
       groups=st.lists(names, max_size=3, unique=True), host=st.one_of(st.none(), names),
       owner=st.sampled_from(["", "compute:nova", "network:dhcp", "network:router_interface",
                              "network:router_gateway", "network:floatingip", "network:distributed"]),
       pairs=st.lists(st.fixed_dictionaries({"ip_address": st.one_of(ips4, ips6)},
                                            optional={"mac_address": macs}), max_size=3),
       up=st.booleans())
def test_any_port_translates_deterministically_into_a_schema_valid_row(ips, mac, secured, groups, host, owner,
                                                                       pairs, up):
    attrs = {"network_id": "n1", "mac_address": mac, "port_security_enabled": secured, "security_groups": groups,
             "device_owner": owner, "allowed_address_pairs": pairs, "admin_state_up": up,
             "fixed_ips": [{"subnet_id": f"s{i}", "ip_address": ip} for i, ip in enumerate(ips)]}
    if host:
        attrs["binding:host_id"] = host
    d = doc(Kind.PORT, "p1", **attrs)
    out = object_rows(d, GW)
    assert out == object_rows(doc(Kind.PORT, "p1", **dict(reversed(list(attrs.items())))), GW)
    check_rows(out.rows)
    check_object(out)
    lsp = out.primary.columns
    if owner == "network:floatingip":
        assert lsp["addresses"] == [] and lsp["enabled"] == [False]
    else:
        assert lsp["enabled"] == [up]
    # Group memberships only for a port whose traffic is filtered.
    assert bool(out.primary.also_in) == (secured and not owner.startswith("network:"))


@settings(max_examples=150, deadline=None)
@given(direction=st.sampled_from(["ingress", "egress"]), ethertype=st.sampled_from(["IPv4", "IPv6"]),
       protocol=st.sampled_from([None, "any", "tcp", "udp", "sctp", "icmp", "ipv6-icmp", "gre", "17", "112"]),
       low=st.one_of(st.none(), st.integers(0, 65535)), high=st.one_of(st.none(), st.integers(0, 65535)),
       remote=st.sampled_from([None, "prefix", "group"]))
def test_any_rule_translates_deterministically_into_a_schema_valid_acl(direction, ethertype, protocol, low, high,
                                                                       remote):
    attrs: dict[str, Any] = {"direction": direction, "ethertype": ethertype, "protocol": protocol,
                             "port_range_min": low, "port_range_max": high}
    if remote == "prefix":
        attrs["remote_ip_prefix"] = "10.0.0.0/8" if ethertype == "IPv4" else "2001:db8::/32"
    elif remote == "group":
        attrs["remote_group_id"] = "sg-2"
    out = object_rows(rule(**attrs), GW)
    assert out == object_rows(rule(**attrs), GW)
    check_rows(out.rows)
    m = out.primary.columns["match"]
    ip = "ip4" if ethertype == "IPv4" else "ip6"
    assert m.startswith(("outport" if direction == "ingress" else "inport") + f" == @pg_sg_1 && {ip}")
    assert ("ip4" in m) != ("ip6" in m)  # never both families


# -- against ML2/OVN itself (Neutron is installed with the dev extras; skipped where it is not) -----------

rules = st.fixed_dictionaries({
    "direction": st.sampled_from(["ingress", "egress"]), "ethertype": st.sampled_from(["IPv4", "IPv6"]),
    "protocol": st.sampled_from([None, "any", "tcp", "udp", "sctp", "icmp", "ipv6-icmp", "icmpv6", "gre", "vrrp",
                                 "6", "17", "1", "58", "0", "112", "255"]),
    "port_range_min": st.one_of(st.none(), st.integers(0, 65535)),
    "port_range_max": st.one_of(st.none(), st.integers(0, 65535)),
    "remote": st.sampled_from([None, "prefix", "group"])})


@settings(max_examples=300, deadline=None)
@given(r=rules)
def test_rule_matches_equal_ml2_ovns_acl_builder(r):
    acl = pytest.importorskip("neutron.common.ovn.acl")
    attrs = {k: v for k, v in r.items() if k != "remote"}
    if r["remote"] == "prefix":
        attrs["remote_ip_prefix"] = "10.1.2.3/16" if r["ethertype"] == "IPv4" else "2001:db8::1/32"
    elif r["remote"] == "group":
        attrs["remote_group_id"] = "sg-2"
    ours = rows_of(rule(**attrs))["acl"].columns
    # Neutron's rule as ML2/OVN receives it: "any" stored as no protocol, the prefix normalised.
    prefix = attrs.get("remote_ip_prefix")
    neutron_rule = {**attrs, "id": "r1", "protocol": None if attrs["protocol"] == "any" else attrs["protocol"],
                    "remote_group_id": attrs.get("remote_group_id"),
                    "normalized_cidr": str(ipaddress.ip_network(prefix, strict=False)) if prefix else None}
    theirs = acl._add_sg_rule_acl_for_port_group("pg_sg_1", True, neutron_rule)
    assert {k: ours[k] for k in ("match", "direction", "priority", "action", "log", "name", "severity", "meter")} \
        == {k: theirs[k] for k in ("match", "direction", "priority", "action", "log", "name", "severity", "meter")}


@settings(max_examples=200, deadline=None)
@given(ips=st.lists(st.one_of(ips4, ips6), max_size=3, unique=True),
       pairs=st.lists(st.fixed_dictionaries({"ip_address": st.one_of(ips4, ips6),
                                             "mac_address": st.one_of(st.just("fa:16:3e:00:00:01"), macs)}),
                      max_size=3))
def test_port_security_equals_ml2_ovns_without_its_vrrpv3_entries(ips, pairs):
    ovn_client = pytest.importorskip("neutron.plugins.ml2.drivers.ovn.mech_driver.ovsdb.ovn_client")
    port = {"network_id": "n1", "mac_address": "fa:16:3e:00:00:01", "device_owner": "compute:nova",
            "port_security_enabled": True, "allowed_address_pairs": pairs,
            "fixed_ips": [{"subnet_id": f"s{i}", "ip_address": ip} for i, ip in enumerate(ips)]}
    lsp = rows_of(doc(Kind.PORT, "p1", **port))["lsp"].columns
    # ML2/OVN's method reads nothing of the client but the port.
    entries, macs_ = ovn_client.OVNClient._get_allowed_addresses_from_port(None, dict(port))
    assert lsp["port_security"] == sorted(e for e in entries if not e.startswith("VRRPv3 "))
    assert set(macs_) <= set(lsp["addresses"])
