"""The fabric controller's store without HTTP: batch semantics, atomicity, epoch fences, and sums that
are maintained incrementally yet always equal a recomputation from the stored documents (also after a
reopen); a database file of the previous schema opens; ``stale_writes`` on crafted audit logs."""

import json
import random
import re
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converge.core.canonical import ObjectDoc, add, bucket_of, digest_bytes, etag
from converge.core.ids import ObjectId, RootId
from converge.core.kinds import Kind, parents
from converge.fabric import audit, drift, fence, queries, schema
from converge.fabric.errors import ErrorCode, FabricError
from converge.fabric.index import PortStatus
from converge.fabric.operations import parse_batch
from converge.fabric.state import Store
from converge.fabric.validate import Checks
from converge.testing.fabric import StaleWrite, stale_writes

CHECKS = Checks()
EMPTY = etag(0)


def open_store(path, **kw):
    return Store.open(path / "fabric.sqlite", **kw)


def put(kind, oid, revision=0, **attributes):
    return {"op": "put", "object": {"kind": kind, "id": oid, "attributes": attributes, "revision": revision}}


def delete(kind, oid):
    return {"op": "delete", "kind": kind, "id": oid}


def apply(store, root, *ops, if_match=None, checks=CHECKS, epoch=None):
    current = etag(store.index.fingerprint(RootId(root))) if if_match is None else if_match
    parsed = parse_batch({"operations": list(ops)}, max_operations=1000)
    return store.apply_batch(RootId(root), parsed, if_match=current, writer="test", checks=checks, epoch=epoch)


def fences(store):
    return dict(store.conn.execute("SELECT root, epoch FROM fences"))


def stored_docs(store):
    return {(Kind(k), oid): (root, bytes(doc))
            for k, oid, root, doc in store.conn.execute("SELECT kind, id, root, doc FROM objects")}


def assert_consistent(store):
    """Memory == tables == recomputation from the documents; children index == stored references."""
    recomputed = {}
    for (k, oid), (root, doc) in stored_docs(store).items():
        d = digest_bytes(doc)
        fingerprint, count, buckets = recomputed.get(root, (0, 0, {}))
        b = bucket_of(k, oid)
        buckets[b] = add(buckets.get(b, 0), d)
        recomputed[root] = (add(fingerprint, d), count + 1, buckets)
        entry = store.index.objects[(k, oid)]
        assert entry.digest == d and entry.root == root and entry.bucket == b
    assert len(store.index.objects) == sum(c for _, c, _ in recomputed.values())
    memory = {root: (s.fingerprint, s.count, {b: v.sum for b, v in s.buckets.items()})
              for root, s in store.index.roots.items()}
    assert memory == recomputed
    table_roots = {root: (int(fp, 16), n) for root, fp, n in store.conn.execute("SELECT * FROM roots")}
    assert table_roots == {root: (fp, n) for root, (fp, n, _) in recomputed.items()}
    table_buckets = {(root, b): int(s, 16) for root, b, s, _ in store.conn.execute("SELECT * FROM buckets")}
    assert table_buckets == {(root, b): s for root, (_, _, bs) in recomputed.items() for b, s in bs.items()}
    refs = {((Kind(ck), ci), (Kind(pk), pi)) for ck, ci, pk, pi in store.conn.execute("SELECT * FROM refs")}
    assert refs == {(key, parent) for key, e in store.index.objects.items() for parent in e.parents}
    children = {(kid, parent) for parent, kids in store.index.children.items() for kid in kids}
    assert children == refs


def test_a_batch_sees_its_own_earlier_operations(tmp_path):
    store = open_store(tmp_path)
    result = apply(store, "p1", put("network", "n1", name="a"), put("subnet", "s1", network_id="n1"))
    assert result.objects == 2 and result.applied == 2
    result = apply(store, "p1", delete("subnet", "s1"), delete("network", "n1"))
    assert result.objects == 0 and result.fingerprint == 0
    assert_consistent(store)


def test_a_refused_batch_applies_nothing_and_names_the_failing_operation(tmp_path):
    store = open_store(tmp_path)
    apply(store, "p1", put("network", "n1"))
    before = stored_docs(store), store.index.fingerprint(RootId("p1"))
    with pytest.raises(FabricError) as refused:
        apply(store, "p1", put("network", "n2"), delete("network", "n1"), put("subnet", "s1", network_id="n9"))
    assert refused.value.code is ErrorCode.MISSING_PARENT and refused.value.index == 2
    assert refused.value.extra["parent"] == {"kind": "network", "id": "n9"}
    assert (stored_docs(store), store.index.fingerprint(RootId("p1"))) == before
    assert_consistent(store)


def test_parents_with_children_cannot_go_and_the_children_are_named(tmp_path):
    store = open_store(tmp_path)
    apply(store, "p1", put("network", "n1"))
    apply(store, "p2", put("subnet", "s1", network_id="n1"))  # references cross roots
    with pytest.raises(FabricError) as refused:
        apply(store, "p1", delete("network", "n1"))
    assert refused.value.code is ErrorCode.HAS_CHILDREN
    assert refused.value.extra["children"] == [{"root": "p2", "kind": "subnet", "id": "s1"}]


def test_an_object_belongs_to_one_root(tmp_path):
    store = open_store(tmp_path)
    apply(store, "p1", put("network", "n1"))
    with pytest.raises(FabricError) as refused:
        apply(store, "p2", put("network", "n1"))
    assert refused.value.code is ErrorCode.ROOT_CONFLICT and refused.value.index == 0
    apply(store, "p2", delete("network", "n1"))  # delete-if-present is scoped to the batch's root
    assert store.index.count(RootId("p1")) == 1


def test_a_stale_if_match_is_refused_with_the_current_etag(tmp_path):
    store = open_store(tmp_path)
    apply(store, "p1", put("network", "n1"))
    for stale in (EMPTY, "*", 'W/"00"', "garbage"):
        with pytest.raises(FabricError) as refused:
            apply(store, "p1", put("network", "n2"), if_match=stale)
        assert refused.value.code is ErrorCode.PRECONDITION_FAILED
        assert refused.value.extra["etag"] == etag(store.index.fingerprint(RootId("p1")))


@pytest.mark.parametrize(("op", "attribute"), [
    (put("subnet", "s1", network_id="n1", cidr="10.0.0.1/24"), "cidr"),
    (put("port", "q1", network_id="n1", mac_address="fa:16:3e:00:00"), "mac_address"),
    (put("network", "n2", mtu=67), "mtu"),
    (put("network", "n2", mtu=9001), "mtu"),
    (put("network", "n2", name="evil-net"), "name"),
    (put("port", "q1"), "network_id"),
    (put("port", "q1", network_id="n1", security_groups="g1"), "security_groups"),
])
def test_attribute_checks_refuse_with_422_naming_the_attribute(tmp_path, op, attribute):
    store = open_store(tmp_path)
    apply(store, "p1", put("network", "n1"))
    with pytest.raises(FabricError) as refused:
        apply(store, "p1", op, checks=Checks(reject_name=re.compile("^evil")))
    assert refused.value.code is ErrorCode.INVALID_OBJECT and refused.value.index == 0
    assert attribute in refused.value.message


def test_port_status_down_on_create_kept_on_replace_up_once(tmp_path):
    store = open_store(tmp_path)
    result = apply(store, "p1", put("network", "n1"), put("port", "q1", network_id="n1"))
    assert result.created_ports == ((Kind.PORT, "q1"),)
    result = apply(store, "p1", put("port", "q1", 2, network_id="n1", name="x"))
    assert result.created_ports == ()
    [event] = store.mark_ports_up([(Kind.PORT, ObjectId("q1"))])
    assert (event.seq, event.root, event.id, event.status) == (1, "p1", "q1", PortStatus.UP)
    assert store.mark_ports_up([(Kind.PORT, ObjectId("q1"))]) == []
    assert queries.get_object(store, RootId("p1"), (Kind.PORT, ObjectId("q1")))["status"] == "up"
    apply(store, "p1", delete("port", "q1"))
    assert store.mark_ports_up([(Kind.PORT, ObjectId("q1"))]) == []
    store.close()
    assert open_store(tmp_path).event_seq == 1  # event ids keep increasing across restarts


def test_the_audit_log_keeps_only_the_newest_entries(tmp_path):
    store = open_store(tmp_path, audit_keep=5)
    for i in range(8):
        apply(store, "p1", put("network", f"n{i}"))
    entries, following = audit.read(store.conn, after=0, limit=100)
    assert [e["seq"] for e in entries] == [4, 5, 6, 7, 8] and following is None
    assert entries[-1]["etag"] == etag(store.index.fingerprint(RootId("p1")))


# -- epoch fences -----------------------------------------------------------------------------------------

def test_a_stale_epoch_is_fenced_before_if_match_and_a_refused_batch_moves_no_fence(tmp_path):
    store = open_store(tmp_path)
    apply(store, "p1", put("network", "n1"), epoch=5)
    with pytest.raises(FabricError) as refused:
        apply(store, "p1", put("network", "n2"), if_match=EMPTY, epoch=4)  # a stale If-Match too
    assert refused.value.code is ErrorCode.FENCED and refused.value.status == 412
    assert refused.value.extra == {"epoch": 5, "etag": etag(store.index.fingerprint(RootId("p1")))}
    with pytest.raises(FabricError):
        apply(store, "p1", put("subnet", "s1", network_id="absent"), epoch=8)  # refused: 409
    with pytest.raises(FabricError):
        apply(store, "p1", put("network", "n2"), if_match=EMPTY, epoch=8)  # refused: 412 If-Match
    assert fences(store) == {"p1": 5}
    apply(store, "p1", put("network", "n2"))  # no epoch: unchecked, moves nothing
    apply(store, "p1", put("network", "n3"), epoch=0)
    apply(store, "p1", put("network", "n4"), epoch=5)
    assert fences(store) == {"p1": 5}
    apply(store, "p1", put("network", "n5"), epoch=6)
    store.close()
    assert fences(open_store(tmp_path)) == {"p1": 6}


@pytest.mark.parametrize(("text", "epoch"), [(None, None), ("0", 0), ("7", 7), ("007", 7),
                                             ("9" * 18, 10**18 - 1)])
def test_the_epoch_header_is_a_decimal_integer(text, epoch):
    assert fence.parse_epoch(text) == epoch


@pytest.mark.parametrize("text", ["", "-1", "+1", " 1", "1.0", "0x10", "1_000", "9" * 19, "١"])
def test_anything_else_in_the_epoch_header_is_bad_json(text):
    with pytest.raises(FabricError) as refused:
        fence.parse_epoch(text)
    assert refused.value.code is ErrorCode.BAD_JSON and fence.HEADER in refused.value.message


def test_a_wipe_forgets_every_fence_with_the_objects(tmp_path):
    store = open_store(tmp_path)
    apply(store, "p1", put("network", "n1"), epoch=5)
    apply(store, "p2", put("network", "m1"), epoch=3)
    apply(store, "p2", delete("network", "m1"), epoch=3)  # p2 keeps a fence and no object
    drift.wipe(store)
    assert fences(store) == {}
    apply(store, "p1", put("network", "n1"), epoch=1)
    entries, _ = audit.read(store.conn, after=0, limit=100)
    assert [(e["root"], e["writer"], e["epoch"]) for e in entries[3:]] == \
        [("p1", "fault:wipe", None), ("p1", "test", 1)]


V1_AUDIT = """CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, root TEXT NOT NULL,
    writer TEXT, if_match TEXT, status INTEGER NOT NULL, operations INTEGER NOT NULL, etag TEXT NOT NULL)"""


def test_a_database_of_schema_version_1_is_upgraded_when_opened(tmp_path):
    path = tmp_path / "fabric.sqlite"
    old = sqlite3.connect(path)
    old.execute(V1_AUDIT)
    old.execute("INSERT INTO audit (time, root, writer, if_match, status, operations, etag)"
                " VALUES (1.0, 'p1', 'old', NULL, 428, 0, ?)", (EMPTY,))
    old.execute("PRAGMA user_version=1")
    old.commit()
    old.close()
    store = Store.open(path)
    apply(store, "p1", put("network", "n1"), epoch=2)
    entries, _ = audit.read(store.conn, after=0, limit=10)
    assert [(e["writer"], e["status"], e["epoch"]) for e in entries] == [("old", 428, None), ("test", 200, 2)]
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    store.close()
    assert fences(open_store(tmp_path)) == {"p1": 2}


def test_a_database_of_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "fabric.sqlite"
    newer = sqlite3.connect(path)
    newer.execute(f"PRAGMA user_version={schema.SCHEMA_VERSION + 1}")
    newer.close()
    with pytest.raises(schema.SchemaMismatch):
        Store.open(path)


# -- stale_writes on crafted audit logs (through the API, a working fence never lets one through) -------

def entry(seq, root, epoch, status=200, writer="w"):
    return {"seq": seq, "root": root, "writer": writer, "status": status, "epoch": epoch}


def test_stale_writes_finds_an_applied_write_below_an_earlier_epoch_of_its_root():
    log = [entry(1, "p1", 2), entry(2, "p1", 3, writer="b"), entry(3, "p2", 1), entry(4, "p1", 2, writer="a"),
           entry(5, "p1", 3), entry(6, "p1", 1, writer="a")]
    assert stale_writes(log) == {"p1": [StaleWrite("p1", 4, "a", 2, 3, 2, after_wipe=False),
                                        StaleWrite("p1", 6, "a", 1, 3, 5, after_wipe=False)]}


def test_stale_writes_ignores_refusals_writes_without_an_epoch_and_other_roots():
    log = [entry(1, "p1", 5), entry(2, "p1", 4, status=412), entry(3, "p1", None), entry(4, "p1", 0),
           entry(5, "p2", 1), entry(6, "p1", 5), entry(7, "p1", 6), entry(8, "p2", 1)]
    assert stale_writes(log) == {}
    assert stale_writes([]) == {}


def test_stale_writes_reports_what_a_wipe_let_through_and_says_so():
    log = [entry(1, "p1", 7), entry(2, "p2", 5), entry(3, "p2", None, writer="fault:wipe"),
           entry(4, "p1", 4, writer="a"),  # the wipe (logged under p2) forgot p1's fence too
           entry(5, "p1", 3, writer="a"),  # the fence was 4 again: a fence that failed
           entry(6, "p1", 5), entry(7, "p1", 8), entry(8, "p1", 5, writer="a")]
    assert stale_writes(log) == {"p1": [StaleWrite("p1", 4, "a", 4, 7, 1, after_wipe=True),
                                        StaleWrite("p1", 5, "a", 3, 7, 1, after_wipe=False),
                                        StaleWrite("p1", 6, "w", 5, 7, 1, after_wipe=True),
                                        StaleWrite("p1", 8, "a", 5, 8, 7, after_wipe=False)]}


# -- random operations: the store against a model of the documented semantics ---------------------------

NETS, SGS, SUBNETS, PORTS = ["n0", "n1", "n2"], ["g0", "g1"], ["s0", "s1"], ["q0", "q1", "q2"]
names = st.sampled_from(["a", "b", "c"])
revisions = st.integers(0, 2)
put_ops = st.one_of(
    st.builds(lambda i, n, r: put("network", i, r, name=n), st.sampled_from(NETS), names, revisions),
    st.builds(lambda i, n, r: put("security_group", i, r, name=n), st.sampled_from(SGS), names, revisions),
    st.builds(lambda i, net, r: put("subnet", i, r, network_id=net, cidr="10.0.0.0/24"),
              st.sampled_from(SUBNETS), st.sampled_from(NETS), revisions),
    st.builds(lambda i, net, groups, r: put("port", i, r, network_id=net, security_groups=groups),
              st.sampled_from(PORTS), st.sampled_from(NETS), st.lists(st.sampled_from(SGS), max_size=2), revisions),
)
delete_ops = st.one_of(*(st.builds(delete, st.just(k), st.sampled_from(ids)) for k, ids in
                         [("network", NETS), ("security_group", SGS), ("subnet", SUBNETS), ("port", PORTS)]))
batches = st.tuples(st.sampled_from(["r0", "r1"]), st.lists(st.one_of(put_ops, delete_ops), max_size=6),
                    st.sampled_from([None, 0, 1, 2, 3]))  # the lease epoch: None sends no header
steps = st.one_of(
    batches.map(lambda b: ("batch", b)),
    st.tuples(st.just("drop"), st.integers(0, 3)),
    st.tuples(st.just("corrupt"), st.integers(0, 3)),
    st.tuples(st.just("wipe"), st.just(0)),
)


def model_apply(model, fenced, root, ops, epoch):
    """The protocol's batch semantics, written plainly: returns (code, index) of a refusal or None."""
    if epoch and epoch < fenced.get(root, 0):
        return ErrorCode.FENCED, None
    m = dict(model)
    for i, op in enumerate(ops):
        if op["op"] == "put":
            o = op["object"]
            key = (Kind(o["kind"]), o["id"])
            if key in m and m[key][0] != root:
                return ErrorCode.ROOT_CONFLICT, i
            if any(p not in m for p in parents(key[0], o["attributes"])):
                return ErrorCode.MISSING_PARENT, i
            m[key] = (root, ObjectDoc(key[0], o["id"], o["attributes"], o["revision"]).canonical())
        else:
            key = (Kind(op["kind"]), op["id"])
            if key not in m or m[key][0] != root:
                continue
            if any(key in set(parents(k[0], json.loads(doc)["attributes"])) for k, (_, doc) in m.items()):
                return ErrorCode.HAS_CHILDREN, i
            del m[key]
    model.clear()
    model.update(m)
    if epoch:
        fenced[root] = max(epoch, fenced.get(root, 0))
    return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, max_size=25), st.randoms(use_true_random=False))
def test_incremental_sums_equal_recomputation_after_random_operations(history, rnd):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        store = open_store(path)
        model, fenced = {}, {}
        for step, arg in history:
            if step == "batch":
                root, ops, epoch = arg
                before = stored_docs(store)
                expected = model_apply(model, fenced, root, ops, epoch)
                try:
                    apply(store, root, *ops, epoch=epoch)
                    outcome = None
                except FabricError as exc:
                    outcome = exc.code, exc.index
                    assert stored_docs(store) == before
                assert outcome == expected
            elif step == "drop":
                for _, key in drift.drop(store, arg, rng=random.Random(rnd.random())):
                    del model[key]
            elif step == "corrupt":
                touched = drift.corrupt(store, arg, rng=random.Random(rnd.random()))
                docs = stored_docs(store)
                for _, key in touched:
                    assert docs[key] != model[key]
                    model[key] = docs[key]
            else:
                drift.wipe(store)
                model.clear()
                fenced.clear()
            assert stored_docs(store) == model
            assert fences(store) == fenced
            assert_consistent(store)
        store.close()
        reopened = open_store(path)
        assert_consistent(reopened)
        assert fences(reopened) == fenced
        assert {r: (s.fingerprint, s.count) for r, s in reopened.index.roots.items()} == \
            {r: (s.fingerprint, s.count) for r, s in store.index.roots.items()}
        reopened.close()
