"""Planning: coalescing, dependency order, blocking, expected fingerprint (pure logic)."""

import json

from converge.backends.base import Delete, Put
from converge.core import canonical
from converge.core.canonical import ObjectDoc
from converge.core.kinds import Kind
from converge.engine.plan import REFUSED_DELETE, make_plan
from converge.store.schema import ObjectState
from converge.store.sync import DesiredRow, StatusRow


def desired(kind, oid, rev=1, root="r", **attrs):
    doc = ObjectDoc(Kind(kind), oid, attrs, rev)
    return (kind, oid), DesiredRow(root, kind, oid, json.dumps(attrs), rev, doc.digest())


def status(kind, oid, pushed, state=ObjectState.SYNCED, error_digest=None, root="r"):
    return (kind, oid), StatusRow(root, kind, oid, state, pushed, error_digest, None, 0)


def test_puts_parents_first_and_deletes_children_first_after_puts():
    d = dict([desired("port", "p1", network_id="n1"), desired("subnet", "s1", network_id="n1"),
              desired("network", "n1")])
    s = dict([status("port", "old", 11), status("network", "oldnet", 12)])
    keys = [("port", "p1"), ("network", "oldnet"), ("subnet", "s1"), ("port", "old"), ("network", "n1")]
    plan = make_plan(keys=keys, desired=d, status=s, acked=23)
    kinds = [(type(op).__name__, op.key) for op in plan.operations]
    assert kinds == [("Put", ("network", "n1")), ("Put", ("subnet", "s1")), ("Put", ("port", "p1")),
                     ("Delete", ("port", "old")), ("Delete", ("network", "oldnet"))]
    expect = canonical.combine([d[k].digest for k in d])  # 23 - 11 - 12 + new digests
    assert plan.expected == expect


def test_coalescing_latest_state_wins_and_create_then_delete_is_nothing():
    key, row = desired("network", "n1", rev=5, name="latest")
    plan = make_plan(keys=[key, key, key, ("network", "gone")], desired={key: row}, status={}, acked=0)
    assert len(plan.operations) == 1
    op = plan.operations[0]
    assert isinstance(op, Put) and op.doc.revision == 5 and op.doc.attributes["name"] == "latest"
    assert plan.removed == {("network", "gone")}


def test_update_back_to_what_the_controller_has_is_settled_not_sent():
    key, row = desired("network", "n1")
    plan = make_plan(keys=[key], desired={key: row}, status=dict([status("network", "n1", row.digest)]),
                     acked=row.digest)
    assert plan.operations == [] and plan.settled == {key: row.digest}


def test_child_of_refused_parent_is_blocked_and_siblings_flow():
    net_key, net = desired("network", "n1")
    sub_key, sub = desired("subnet", "s1", network_id="n1")
    port_key, port = desired("port", "p1", network_id="n1")
    other_key, other = desired("network", "n2")
    d = {net_key: net, sub_key: sub, port_key: port, other_key: other}
    plan = make_plan(keys=list(d), desired=d, status={}, acked=0, refused={net_key: net.digest})
    assert [op.key for op in plan.operations] == [other_key]
    assert set(plan.blocked) == {sub_key, port_key}
    assert "refused" in plan.blocked[sub_key][1]
    assert plan.held == {net_key}


def test_error_on_same_digest_is_held_but_a_new_desired_state_is_retried():
    key, row = desired("network", "n1", rev=2)
    err = dict([status("network", "n1", None, ObjectState.ERROR, error_digest=row.digest)])
    assert make_plan(keys=[key], desired={key: row}, status=err, acked=0).held == {key}
    old = dict([status("network", "n1", None, ObjectState.ERROR, error_digest=row.digest + 1)])
    assert [op.key for op in make_plan(keys=[key], desired={key: row}, status=old, acked=0).operations] == [key]


def test_parent_not_yet_synced_elsewhere_blocks_child():
    port_key, port = desired("port", "p1", network_id="ext")
    ext_key, ext = desired("network", "ext", root="admin")
    plan = make_plan(keys=[port_key], desired={port_key: port, ext_key: ext}, status={}, acked=0)
    assert plan.operations == [] and "to be synced" in plan.blocked[port_key][1]
    synced = dict([status("network", "ext", ext.digest, root="admin")])
    plan = make_plan(keys=[port_key], desired={port_key: port, ext_key: ext}, status=synced, acked=0)
    assert [op.key for op in plan.operations] == [port_key]


def test_refused_delete_is_held():
    s = dict([status("network", "n1", 5)])
    plan = make_plan(keys=[("network", "n1")], desired={}, status=s, acked=5,
                     refused={("network", "n1"): REFUSED_DELETE})
    assert plan.operations == [] and plan.held == {("network", "n1")}
    plan = make_plan(keys=[("network", "n1")], desired={}, status=s, acked=5)
    assert plan.operations == [Delete(Kind.NETWORK, "n1")] and plan.expected == 0


def test_a_deferred_delete_is_blocked_not_sent_and_leaves_the_fingerprint_alone():
    s = dict([status("network", "ext", 11), status("router", "r9", 12)])
    keys = [("network", "ext"), ("router", "r9")]
    plan = make_plan(keys=keys, desired={}, status=s, acked=23,
                     deferred={("network", "ext"): "waiting for router r1 to be deleted from the controller first"})
    assert [(type(op).__name__, op.key) for op in plan.operations] == [("Delete", ("router", "r9"))]
    assert plan.blocked == {("network", "ext"): (11, "waiting for router r1 to be deleted from the controller first")}
    assert plan.expected == 11
