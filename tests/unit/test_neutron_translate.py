"""Neutron resource dicts → Converge changes (pure)."""

from converge.core.kinds import Kind
from converge.neutron import translate
from converge.store.schema import JournalOp

PORT = {
    "id": "p1", "project_id": "proj", "tenant_id": "proj", "network_id": "n1", "name": "vm",
    "mac_address": "fa:16:3e:00:00:01", "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.5"}],
    "security_groups": ["sg2", "sg1"], "status": "DOWN", "revision_number": 7,
    "created_at": "2026-11-21T00:00:00Z", "updated_at": "2026-11-21T00:00:01Z", "tags": [],
    "binding:host_id": "compute-1", "binding:profile": {"weight": 0.5}, "admin_state_up": True,
}


def test_a_port_keeps_what_the_controller_needs_and_drops_bookkeeping():
    change = translate.upsert(Kind.PORT, PORT, created=True)
    assert (change.root, change.kind, change.id, change.op, change.revision) == (
        "proj", Kind.PORT, "p1", JournalOp.CREATE, 7)
    attrs = dict(change.attributes)
    assert attrs["security_groups"] == ["sg1", "sg2"]  # order does not make a different port
    assert attrs["binding:profile"] == {"weight": "0.5"}  # a float travels as a string, not as an error
    for volatile in ("status", "created_at", "updated_at", "revision_number", "tenant_id", "tags"):
        assert volatile not in attrs


def test_status_only_changes_do_not_change_the_fingerprint():
    a = translate.upsert(Kind.PORT, PORT, created=False)
    b = translate.upsert(Kind.PORT, {**PORT, "status": "ACTIVE", "updated_at": "later"}, created=False)
    assert a.digest() == b.digest()


def test_a_router_carries_its_gateway_network_as_a_reference():
    router = {"id": "r1", "project_id": "proj", "name": "r", "admin_state_up": True, "revision_number": 2,
              "external_gateway_info": {"network_id": "ext", "enable_snat": True,
                                        "external_fixed_ips": [{"subnet_id": "es", "ip_address": "172.24.4.2"}]}}
    attrs = dict(translate.upsert(Kind.ROUTER, router, created=True).attributes)
    assert attrs["external_network_id"] == "ext" and attrs["enable_snat"] is True


def test_a_new_security_group_brings_its_rules():
    group = {"id": "sg1", "project_id": "proj", "name": "default", "description": "", "stateful": True,
             "revision_number": 1, "security_group_rules": [
                 {"id": "r1", "project_id": "proj", "security_group_id": "sg1", "direction": "egress",
                  "ethertype": "IPv4", "protocol": None, "port_range_min": None, "port_range_max": None,
                  "remote_ip_prefix": None, "remote_group_id": None, "revision_number": 0}]}
    changes = translate.security_group_changes(group, created=True)
    assert [(c.kind, c.id) for c in changes] == [(Kind.SECURITY_GROUP, "sg1"), (Kind.SECURITY_GROUP_RULE, "r1")]
    assert translate.delete(Kind.SECURITY_GROUP, group, oid="sg1", root="x").root == "proj"


def test_an_update_travels_unchanged_when_only_bookkeeping_moved():
    from converge.neutron.mech_driver import same_for_the_controller

    active = {**PORT, "status": "ACTIVE", "revision_number": 8, "security_groups": ["sg1", "sg2"], "updated_at": "x"}
    assert same_for_the_controller(Kind.PORT, PORT, active)
    assert not same_for_the_controller(Kind.PORT, PORT, {**PORT, "binding:host_id": "compute-2"})
    assert not same_for_the_controller(Kind.PORT, PORT, {**PORT, "project_id": "other"})
    assert not same_for_the_controller(Kind.PORT, None, PORT)
