"""The lease-epoch fence of the reference controller, over real HTTP: a batch whose ``X-Converge-Epoch``
is below its root's fence is refused (412 fenced) before anything else, applies nothing and is audited
with its epoch; a newer epoch moves the fence; the fence survives a restart and not a wipe; the fabric
client raises ``Fenced`` for it; and ``stale_writes`` finds no stale write after a run of fenced writers."""

import httpx
import pytest

from converge.backends.base import Put
from converge.backends.fabric import FabricClient
from converge.core.canonical import ObjectDoc, etag, parse_etag
from converge.core.errors import Fenced, PreconditionFailed
from converge.core.ids import ObjectId, RootId
from converge.core.kinds import Kind
from converge.testing.fabric import put_op

EMPTY = etag(0)


def network(oid, name="n"):
    return put_op("network", oid, 1, name=name)


def assert_fenced(response, fence):
    assert response.status_code == 412, response.text
    body = response.json()
    assert body["error"] == "fenced" and body["epoch"] == fence and body["message"]
    assert body["etag"] == response.headers["ETag"]
    return body


def test_a_stale_epoch_is_refused_before_anything_else_applies_nothing_and_is_audited(fabric):
    assert fabric.batch("p1", [network("n1")], epoch=5, writer="new").status_code == 200
    before = fabric.get("/v1/roots/p1")
    body = assert_fenced(fabric.batch("p1", [network("n2")], epoch=4, writer="old"), 5)
    assert body["etag"] == before["etag"]
    # Before If-Match (missing or stale) and before the body is read.
    assert_fenced(fabric.batch("p1", [network("n2")], epoch=4, if_match=EMPTY), 5)
    with fabric.client() as http:
        assert_fenced(http.post("/v1/roots/p1/batch", content=b"not json", headers={"X-Converge-Epoch": "4"}), 5)
    assert fabric.get("/v1/roots/p1") == before
    assert [o["id"] for o in fabric.objects("p1")] == ["n1"]
    entries = fabric.audit()
    assert [(e["writer"], e["status"], e["epoch"]) for e in entries[:2]] == [("new", 200, 5), ("old", 412, 4)]
    assert [e["epoch"] for e in entries[2:]] == [4, 4] and entries[1]["operations"] == 0


def test_a_newer_or_equal_epoch_applies_and_moves_the_fence_of_its_root_only(fabric):
    assert fabric.batch("p1", [network("n1")], epoch=5).status_code == 200
    assert fabric.batch("p1", [network("n2")], epoch=7).status_code == 200
    assert_fenced(fabric.batch("p1", [network("n3")], epoch=6), 7)
    assert fabric.batch("p1", [network("n3")], epoch=7).status_code == 200
    assert fabric.batch("p2", [network("m1")], epoch=1).status_code == 200  # another root: no fence yet


def test_a_refused_batch_does_not_move_the_fence(fabric):
    assert fabric.batch("p1", [network("n1")], epoch=3).status_code == 200
    missing_parent = put_op("subnet", "s1", 1, network_id="absent", cidr="10.0.0.0/24")
    assert fabric.batch("p1", [missing_parent], epoch=9).status_code == 409
    assert fabric.batch("p1", [network("n2")], epoch=9, if_match=EMPTY).status_code == 412  # If-Match
    assert fabric.batch("p1", [network("n2")], epoch=4).status_code == 200


def test_the_fence_survives_a_restart(fabric):
    assert fabric.batch("p1", [network("n1")], epoch=5).status_code == 200
    fabric.restart()
    assert_fenced(fabric.batch("p1", [network("n2")], epoch=4), 5)
    assert fabric.batch("p1", [network("n2")], epoch=5).status_code == 200


def test_a_batch_without_an_epoch_or_with_epoch_0_is_not_fenced_and_moves_nothing(fabric):
    assert fabric.batch("p1", [network("n1")], epoch=5).status_code == 200
    assert fabric.batch("p1", [network("n2")]).status_code == 200
    assert fabric.batch("p1", [network("n3")], epoch=0).status_code == 200
    assert_fenced(fabric.batch("p1", [network("n4")], epoch=4), 5)
    assert [e["epoch"] for e in fabric.audit()] == [5, None, 0, 4]


@pytest.mark.parametrize("header", ["-1", "abc", "1.5", "+3", "", "1" * 19])
def test_a_malformed_epoch_is_bad_json_and_audited_without_one(fabric, header):
    with fabric.client() as http:
        response = http.post("/v1/roots/p1/batch", json={"operations": [network("n1")]},
                             headers={"If-Match": EMPTY, "X-Converge-Epoch": header})
    assert response.status_code == 400 and response.json()["error"] == "bad_json", response.text
    assert "X-Converge-Epoch" in response.json()["message"]
    [entry] = fabric.audit()
    assert entry["status"] == 400 and entry["epoch"] is None


def test_wipe_forgets_the_fences_and_stale_writes_reports_what_it_let_through(fabric):
    assert fabric.batch("p1", [network("n1")], epoch=5, writer="b").status_code == 200
    assert fabric.batch("p2", [network("m1")], epoch=5, writer="b").status_code == 200
    assert fabric.batch("p2", [{"op": "delete", "kind": "network", "id": "m1"}], epoch=5).status_code == 200
    assert fabric.stale_writes() == {}
    fabric.admin("POST", "wipe")
    # p1 held objects, p2 only a fence: both are gone, and any epoch writes again.
    assert fabric.batch("p1", [network("n1")], epoch=2, writer="a").status_code == 200
    assert fabric.batch("p2", [network("m1")], epoch=1, writer="a").status_code == 200
    assert fabric.batch("p1", [network("n2")], epoch=3, writer="a").status_code == 200
    assert_fenced(fabric.batch("p1", [network("n3")], epoch=2), 3)  # a fence again from the first batch
    found = fabric.stale_writes()
    assert sorted(found) == ["p1", "p2"]
    assert [(s.writer, s.epoch, s.fence, s.after_wipe) for s in found["p1"]] == \
        [("a", 2, 5, True), ("a", 3, 5, True)]
    assert [(s.epoch, s.fence, s.after_wipe) for s in found["p2"]] == [(1, 5, True)]


# -- the fabric backend's client ------------------------------------------------------------------------

ROOT = RootId("p1")


def doc(oid, name="n"):
    return ObjectDoc(Kind.NETWORK, ObjectId(oid), {"name": name}, 1)


def test_the_client_raises_fenced_for_a_fence_and_precondition_failed_for_any_other_412(fabric):
    client = FabricClient([fabric.url], fabric.token, writer="test")
    try:
        acked = client.apply(ROOT, if_match=0, operations=[Put(doc("n1"))], epoch=5)
        with pytest.raises(Fenced) as fenced:
            client.apply(ROOT, if_match=acked, operations=[Put(doc("n2"))], epoch=4)
        assert fenced.value.epoch == 5 and fenced.value.current == acked
        with pytest.raises(PreconditionFailed) as stale:
            client.apply(ROOT, if_match=0, operations=[Put(doc("n2"))], epoch=5)
        assert not isinstance(stale.value, Fenced) and stale.value.current == acked
        acked = client.apply(ROOT, if_match=acked, operations=[Put(doc("n2"))])  # epoch 0: no header
        assert acked == parse_etag(fabric.get("/v1/roots/p1")["etag"])
        assert [(e["status"], e["epoch"]) for e in fabric.audit()] == [(200, 5), (412, 4), (412, 5), (200, None)]
    finally:
        client.close()


def test_writers_that_take_a_root_over_in_turn_leave_no_stale_write(fabric):
    """Each writer takes the root over with a higher epoch; the one before keeps trying with its own."""
    clients = [FabricClient([fabric.url], fabric.token, writer=f"w{epoch}") for epoch in (1, 2, 3)]
    try:
        acked = 0
        for epoch, client in enumerate(clients, start=1):
            acked = client.apply(ROOT, if_match=acked, operations=[Put(doc(f"n{epoch}"))], epoch=epoch)
            if epoch > 1:
                with pytest.raises(Fenced):
                    clients[epoch - 2].apply(ROOT, if_match=acked, operations=[Put(doc("late"))], epoch=epoch - 1)
        assert {e["status"] for e in fabric.audit()} == {200, 412}
        assert fabric.stale_writes() == {}
        assert not any(o["id"] == "late" for o in fabric.objects("p1"))
    finally:
        for client in clients:
            client.close()


def test_the_fenced_answer_is_counted_as_a_412(fabric):
    fabric.batch("p1", [network("n1")], epoch=2)
    fabric.batch("p1", [network("n2")], epoch=1)
    text = httpx.get(f"{fabric.url}/metrics", headers=fabric.headers()).text
    assert 'converge_fabric_batches_total{status="412"} 1.0' in text
