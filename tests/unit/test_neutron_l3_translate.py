"""Routers, router interfaces and floating IPs: Neutron dicts → Converge changes (pure functions of
``converge.neutron.l3`` and ``translate``)."""

from converge.core.kinds import Kind, parents
from converge.neutron import l3, translate
from converge.store.schema import JournalOp

ROUTER = {"id": "r1", "project_id": "proj", "name": "edge", "description": "", "admin_state_up": True,
          "status": "ACTIVE", "external_gateway_info": None, "routes": [], "distributed": False, "ha": False,
          "availability_zone_hints": [], "revision_number": 3, "converge:sync_state": "pending"}
GATEWAY_PORT = {"id": "gw1", "project_id": "", "network_id": "ext", "device_owner": "network:router_gateway",
                "device_id": "r1", "mac_address": "fa:16:3e:00:00:0a",
                "fixed_ips": [{"subnet_id": "es", "ip_address": "172.24.4.10"}]}
INTERFACE_PORT = {"id": "p1", "project_id": "proj", "network_id": "n1", "device_owner": "network:router_interface",
                  "device_id": "r1", "mac_address": "fa:16:3e:00:00:01",
                  "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.1"}], "revision_number": 4}
SUBNETS = {"es": l3.Subnet("172.24.4.0/24", "172.24.4.1"), "es6": l3.Subnet("2001:db8:24::/64", None),
           "s1": l3.Subnet("10.0.0.0/24", "10.0.0.1"), "s2": l3.Subnet("2001:db8:2::/64", "2001:db8:2::1"),
           "s9": l3.Subnet("2001:db8:9::/56", "2001:db8:9::1")}
CIDRS = {i: s.cidr for i, s in SUBNETS.items()}
FIP = {"id": "f1", "project_id": "proj", "tenant_id": "proj", "floating_network_id": "ext",
       "floating_ip_address": "172.24.4.20", "port_id": "vm1", "fixed_ip_address": "10.0.0.5", "router_id": "r1",
       "status": "DOWN", "description": "", "qos_policy_id": None, "qos_network_policy_id": None,
       "port_details": {"name": "vm"}, "revision_number": 2}


def test_a_gateway_port_becomes_the_routers_external_network_reference():
    router = l3.router_with_gateway(ROUTER, GATEWAY_PORT, enable_snat=True)
    change = translate.upsert(Kind.ROUTER, router, created=False)
    assert (change.root, change.id, change.op) == ("proj", "r1", JournalOp.UPDATE)
    attrs = dict(change.attributes or {})
    assert attrs["external_network_id"] == "ext" and attrs["enable_snat"] is True
    assert attrs["external_fixed_ips"] == [{"subnet_id": "es", "ip_address": "172.24.4.10"}]
    assert list(parents(Kind.ROUTER, attrs)) == [(Kind.NETWORK, "ext")]


def test_the_router_recorded_from_its_gateway_port_equals_what_the_api_shows_once_linked():
    shown = {**ROUTER, "external_gateway_info": {
        "network_id": "ext", "enable_snat": True,
        "external_fixed_ips": [{"subnet_id": "es", "ip_address": "172.24.4.10"}]}}
    from_port = l3.router_with_gateway(ROUTER, GATEWAY_PORT, enable_snat=True)
    assert translate.attributes(Kind.ROUTER, from_port) == translate.attributes(Kind.ROUTER, shown)


def test_a_deleted_gateway_port_leaves_a_router_without_external_network():
    linked = l3.router_with_gateway(ROUTER, GATEWAY_PORT, enable_snat=True)
    attrs = translate.attributes(Kind.ROUTER, l3.router_with_gateway(linked, None, enable_snat=True))
    assert "external_network_id" not in attrs and "external_fixed_ips" not in attrs  # None means absent
    assert list(parents(Kind.ROUTER, attrs)) == []


def test_only_a_router_gateway_port_with_a_router_is_a_gateway():
    assert l3.is_gateway(GATEWAY_PORT)
    assert not l3.is_gateway({**GATEWAY_PORT, "device_id": ""})
    assert not l3.is_gateway(INTERFACE_PORT)


def test_an_interface_port_stands_for_a_router_interface_with_the_ports_id():
    interface = l3.interface_of(INTERFACE_PORT, CIDRS)
    assert interface is not None
    change = translate.upsert(Kind.ROUTER_INTERFACE, interface, created=True)
    assert (change.root, change.kind, change.id, change.revision) == ("proj", Kind.ROUTER_INTERFACE, "p1", 4)
    assert dict(change.attributes or {}) == {"router_id": "r1", "subnet_id": "s1", "subnet_ids": ["s1"],
                                             "port_id": "p1", "mac_address": "fa:16:3e:00:00:01",
                                             "networks": ["10.0.0.1/24"]}
    assert set(parents(Kind.ROUTER_INTERFACE, change.attributes or {})) == {
        (Kind.ROUTER, "r1"), (Kind.SUBNET, "s1"), (Kind.PORT, "p1")}


def test_other_ports_are_not_interfaces():
    assert l3.is_interface(INTERFACE_PORT)
    for port in ({**INTERFACE_PORT, "device_owner": "compute:nova"},
                 {**INTERFACE_PORT, "device_owner": ""},  # detached by a rollback
                 {**INTERFACE_PORT, "device_id": ""}, {**INTERFACE_PORT, "fixed_ips": []}, GATEWAY_PORT):
        assert not l3.is_interface(port)
        assert l3.interface_of(port, CIDRS) is None


def test_a_port_with_several_prefixes_names_one_subnet_whatever_the_order():
    ips = [{"subnet_id": "s9", "ip_address": "2001:db8:9::1"}, {"subnet_id": "s2", "ip_address": "2001:db8:2::1"}]
    one = l3.interface_of({**INTERFACE_PORT, "fixed_ips": ips}, CIDRS)
    other = l3.interface_of({**INTERFACE_PORT, "fixed_ips": ips[::-1]}, CIDRS)
    assert one is not None and one == other and one["subnet_id"] == "s2"
    assert one["networks"] == ["2001:db8:2::1/64", "2001:db8:9::1/56"]  # each address with its own prefix length


def test_an_interface_carries_its_ports_mac_and_addresses_with_their_prefix_lengths():
    interface = l3.interface_of(INTERFACE_PORT, CIDRS)
    assert interface is not None
    attrs = translate.attributes(Kind.ROUTER_INTERFACE, interface)
    assert (attrs["mac_address"], attrs["networks"]) == ("fa:16:3e:00:00:01", ["10.0.0.1/24"])
    moved = l3.interface_of({**INTERFACE_PORT, "mac_address": "fa:16:3e:00:00:02"}, CIDRS)
    assert moved is not None and translate.upsert(Kind.ROUTER_INTERFACE, moved, created=False).digest() != (
        translate.upsert(Kind.ROUTER_INTERFACE, interface, created=False).digest())


def test_an_address_whose_subnet_is_unknown_is_left_out_of_the_networks():
    ips = [{"subnet_id": "s1", "ip_address": "10.0.0.1"}, {"subnet_id": "gone", "ip_address": "10.9.0.1"}]
    assert l3.networks(ips, CIDRS) == ["10.0.0.1/24"]


def gateway_document(router, port=GATEWAY_PORT, subnets=SUBNETS):
    """The router as the gateway port's transaction records it."""
    return l3.router_document(l3.router_with_gateway(router, port, enable_snat=True), port, subnets)


def test_a_router_with_a_gateway_carries_the_gateway_port_its_addresses_and_the_default_routes_nexthops():
    attrs = translate.attributes(Kind.ROUTER, gateway_document(ROUTER))
    assert {k: v for k, v in attrs.items() if k.startswith("gateway_")} == {
        "gateway_port_id": "gw1", "gateway_mac_address": "fa:16:3e:00:00:0a",
        "gateway_networks": ["172.24.4.10/24"], "gateway_nexthops": ["172.24.4.1"]}
    assert list(parents(Kind.ROUTER, attrs)) == [(Kind.NETWORK, "ext")]  # the gateway port is not a parent


def test_gateway_nexthops_leave_out_subnets_without_a_gateway_ip_and_keep_each_once():
    ips = [{"subnet_id": "es6", "ip_address": "2001:db8:24::5"}, {"subnet_id": "es", "ip_address": "172.24.4.11"},
           {"subnet_id": "es", "ip_address": "172.24.4.10"}]
    attrs = translate.attributes(Kind.ROUTER, gateway_document(ROUTER, {**GATEWAY_PORT, "fixed_ips": ips}))
    assert attrs["gateway_networks"] == ["172.24.4.10/24", "172.24.4.11/24", "2001:db8:24::5/64"]
    assert attrs["gateway_nexthops"] == ["172.24.4.1"]
    no_gateway_ip = {**SUBNETS, "es": SUBNETS["es"]._replace(gateway_ip=None)}
    attrs = translate.attributes(Kind.ROUTER, gateway_document(ROUTER, subnets=no_gateway_ip))
    assert attrs["gateway_nexthops"] == []  # a gateway without a default route: said, not left out


def test_the_router_transaction_and_the_gateway_port_transaction_record_the_same_router():
    """_record_router reads the gateway port through router_db.gw_port, _record_gateway is handed the port
    dict being written: with the same port and subnets, one document."""
    shown = {**ROUTER, "external_gateway_info": {
        "network_id": "ext", "enable_snat": True,
        "external_fixed_ips": [{"subnet_id": "es", "ip_address": "172.24.4.10"}]}}
    from_router = l3.router_document(shown, {k: GATEWAY_PORT[k] for k in ("id", "mac_address", "fixed_ips")},
                                     {"es": SUBNETS["es"]})
    assert translate.attributes(Kind.ROUTER, from_router) == translate.attributes(Kind.ROUTER, gateway_document(ROUTER))


def test_a_router_without_a_gateway_carries_no_gateway_fields():
    for router in (ROUTER, l3.router_with_gateway(ROUTER, None, enable_snat=True)):
        attrs = translate.attributes(Kind.ROUTER, l3.router_document(router, GATEWAY_PORT, SUBNETS))
        assert not [k for k in attrs if k.startswith("gateway_")]
        assert translate.attributes(Kind.ROUTER, l3.router_document(router, None, {})) == attrs


def test_a_subnet_update_leaves_the_requested_gateway_ip_as_neutron_stores_it_or_the_original():
    original = {"id": "es", "cidr": "2001:db8:24::/64", "gateway_ip": "2001:db8:24::1"}
    assert l3.updated_gateway_ip(original, {"name": "renamed"}) == "2001:db8:24::1"  # not in the request
    assert l3.updated_gateway_ip(original, {"gateway_ip": "2001:DB8:24:0::FE"}) == "2001:db8:24::fe"
    assert l3.updated_gateway_ip(original, {"gateway_ip": "2001:db8:24::1"}) == original["gateway_ip"]
    assert l3.updated_gateway_ip(original, {"gateway_ip": None}) is None  # the gateway removed
    assert l3.updated_gateway_ip({**original, "gateway_ip": None}, {}) is None


def test_a_routers_nexthops_follow_the_gateway_ip_a_subnet_update_writes():
    """What _subnet_updating records: the router's document with the subnet's new gateway IP in place of
    the one its row still holds; the other subnets of the gateway port keep theirs."""
    ips = [{"subnet_id": "es", "ip_address": "172.24.4.10"}, {"subnet_id": "s2", "ip_address": "2001:db8:2::5"}]
    port = {**GATEWAY_PORT, "fixed_ips": ips}
    moved = l3.with_gateway_ips(SUBNETS, {"es": "172.24.4.254"})
    assert moved["es"] == l3.Subnet("172.24.4.0/24", "172.24.4.254") and moved["s2"] == SUBNETS["s2"]
    before = translate.attributes(Kind.ROUTER, gateway_document(ROUTER, port))
    after = translate.attributes(Kind.ROUTER, gateway_document(ROUTER, port, moved))
    assert (before["gateway_nexthops"], after["gateway_nexthops"]) == (
        ["172.24.4.1", "2001:db8:2::1"], ["172.24.4.254", "2001:db8:2::1"])
    assert {k: v for k, v in after.items() if k != "gateway_nexthops"} == {
        k: v for k, v in before.items() if k != "gateway_nexthops"}
    removed = translate.attributes(Kind.ROUTER, gateway_document(ROUTER, port, l3.with_gateway_ips(SUBNETS, {
        "es": None})))
    assert removed["gateway_nexthops"] == ["2001:db8:2::1"]
    assert l3.with_gateway_ips(SUBNETS, {"elsewhere": "10.0.0.9"}) == SUBNETS  # a subnet the port is not on


def test_a_floating_ip_belongs_to_its_project_and_references_the_external_network():
    change = translate.upsert(Kind.FLOATING_IP, FIP, created=True)
    assert (change.root, change.id, change.op, change.revision) == ("proj", "f1", JournalOp.CREATE, 2)
    attrs = dict(change.attributes or {})
    assert attrs["floating_network_id"] == "ext" and attrs["port_id"] == "vm1"
    for volatile in ("status", "port_details", "tenant_id", "revision_number", "qos_network_policy_id",
                     "qos_policy_id"):
        assert volatile not in attrs
    assert set(parents(Kind.FLOATING_IP, attrs)) == {(Kind.NETWORK, "ext"), (Kind.PORT, "vm1"), (Kind.ROUTER, "r1")}


def test_a_disassociated_floating_ip_keeps_only_its_network_reference():
    free = {**FIP, "port_id": None, "fixed_ip_address": None, "router_id": None}
    attrs = dict(translate.upsert(Kind.FLOATING_IP, free, created=False).attributes or {})
    assert list(parents(Kind.FLOATING_IP, attrs)) == [(Kind.NETWORK, "ext")]
    assert translate.upsert(Kind.FLOATING_IP, free, created=False).digest() != translate.upsert(
        Kind.FLOATING_IP, FIP, created=False).digest()


def test_status_only_changes_of_a_floating_ip_do_not_change_its_fingerprint():
    a = translate.upsert(Kind.FLOATING_IP, FIP, created=False)
    b = translate.upsert(Kind.FLOATING_IP, {**FIP, "status": "ACTIVE", "port_details": {}}, created=False)
    assert a.digest() == b.digest()



def test_keys_the_api_strips_stay_out_of_intent():
    made = {**ROUTER, "enable_snat": True, "gw_port_id": None, "ha_vr_id": 0}  # as _make_router_dict returns it
    attribute_map = {k: {"is_visible": True} for k in ROUTER if k not in ("id", "project_id", "revision_number")}
    shown = l3.visible(made, attribute_map)
    assert shown == ROUTER
    assert "enable_snat" not in translate.attributes(Kind.ROUTER, shown)  # only a gateway carries it
    assert "enable_snat" not in translate.attributes(Kind.ROUTER, made)  # not even from an internal dict
    assert l3.visible(made, None) == made  # no map in this process: nothing is dropped
