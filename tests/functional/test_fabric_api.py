"""The reference controller's protocol, over real HTTP: batch semantics, integrity and the reads."""

import httpx

from converge.core.canonical import add, bucket_name, bucket_of, etag
from converge.testing.fabric import delete_op, expected_etag, put_op

EMPTY = etag(0)


def network(oid, **attributes):
    return put_op("network", oid, 1, **attributes)


def subnet(oid, network_id, **attributes):
    return put_op("subnet", oid, 1, network_id=network_id, cidr="10.0.0.0/24", **attributes)


def assert_refused(response, status, code, index=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and body["message"]
    assert body.get("index") == index
    return body


def test_a_batch_applies_and_answers_the_new_etag(fabric):
    response = fabric.batch("p1", [network("n1", name="blue"), subnet("s1", "n1"),
                                   put_op("port", "q1", 2, network_id="n1", mac_address="fa:16:3e:00:00:01")])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["applied"] == 3 and body["objects"] == 3
    assert body["etag"] == response.headers["ETag"] == fabric.get("/v1/roots/p1")["etag"]
    assert body["etag"] == expected_etag(fabric.objects("p1"))


def test_put_and_delete_are_idempotent_and_an_empty_batch_checks_the_etag(fabric):
    ops = [network("n1"), subnet("s1", "n1"), delete_op("port", "never-existed")]
    first = fabric.batch("p1", ops).json()["etag"]
    assert fabric.batch("p1", ops).json()["etag"] == first
    assert fabric.batch("p1", [], if_match=first).status_code == 200
    assert fabric.batch("p1", [], if_match=EMPTY).status_code == 412


def test_a_refused_batch_applies_nothing_and_names_the_failing_index(fabric):
    fabric.batch("p1", [network("n1")])
    before = fabric.get("/v1/roots/p1")
    response = fabric.batch("p1", [network("n2"), delete_op("network", "n1"), subnet("s1", "n9")])
    body = assert_refused(response, 409, "missing_parent", index=2)
    assert body["parent"] == {"kind": "network", "id": "n9"}
    assert fabric.get("/v1/roots/p1") == before
    assert [o["id"] for o in fabric.objects("p1")] == ["n1"]


def test_a_stale_if_match_gets_412_with_the_current_etag(fabric):
    current = fabric.batch("p1", [network("n1")]).json()["etag"]
    response = fabric.batch("p1", [network("n2")], if_match=EMPTY)
    body = assert_refused(response, 412, "precondition_failed")
    assert body["etag"] == response.headers["ETag"] == current
    assert fabric.batch("p1", [network("n2")], if_match=body["etag"]).status_code == 200


def test_referential_integrity_both_ways_and_within_one_batch(fabric):
    assert_refused(fabric.batch("p1", [subnet("s1", "n1"), network("n1")]), 409, "missing_parent", index=0)
    assert fabric.batch("p1", [network("n1"), subnet("s1", "n1")]).status_code == 200
    body = assert_refused(fabric.batch("p1", [delete_op("network", "n1")]), 409, "has_children", index=0)
    assert body["children"] == [{"root": "p1", "kind": "subnet", "id": "s1"}]
    assert fabric.batch("p1", [delete_op("subnet", "s1"), delete_op("network", "n1")]).json()["objects"] == 0
    # A replace that stops naming a parent frees it, in the same batch.
    fabric.batch("p1", [network("n1"), network("n2"), subnet("s1", "n1")])
    ok = fabric.batch("p1", [subnet("s1", "n2"), delete_op("network", "n1")])
    assert ok.status_code == 200 and ok.json()["objects"] == 2


def test_references_cross_roots(fabric):
    fabric.batch("admin", [network("ext-net", name="public")])
    assert fabric.batch("p1", [put_op("router", "r1", external_network_id="ext-net")]).status_code == 200
    body = assert_refused(fabric.batch("admin", [delete_op("network", "ext-net")]), 409, "has_children", 0)
    assert body["children"] == [{"root": "p1", "kind": "router", "id": "r1"}]


def test_an_object_exists_under_one_root_only(fabric):
    fabric.batch("p1", [network("n1")])
    body = assert_refused(fabric.batch("p2", [network("n2"), network("n1")]), 409, "root_conflict", index=1)
    assert body["root"] == "p1"
    assert fabric.get("/v1/roots/p2")["objects"] == 0
    # A delete is scoped to the batch's root: the object under p1 is not touched.
    assert fabric.batch("p2", [delete_op("network", "n1")]).status_code == 200
    assert fabric.get("/v1/roots/p1")["objects"] == 1


def test_roots_are_listed_in_pages_in_id_order(fabric):
    names = ["p3", "p1", "p5", "p2", "p4"]
    for i, root in enumerate(names):
        fabric.batch(root, [network(f"n{i}")])
    fabric.batch("p6", [network("gone")])
    fabric.batch("p6", [delete_op("network", "gone")])  # an emptied root is not listed
    seen, params = [], {"limit": 2}
    while True:
        page = fabric.get("/v1/roots", params=params)
        assert len(page["roots"]) <= 2
        seen.extend(page["roots"])
        if page["next"] is None:
            break
        params["after"] = page["next"]
    assert [r["root"] for r in seen] == sorted(names)
    for r in seen:
        assert r["objects"] == 1 and r["etag"] == fabric.get(f"/v1/roots/{r['root']}")["etag"]
    assert fabric.get("/v1/roots/unknown") == {"root": "unknown", "etag": EMPTY, "objects": 0}


def test_bucket_groups_buckets_and_bucket_listings_agree(fabric):
    ops = [network(f"n{i}", name=f"net {i}") for i in range(40)]
    fabric.batch("p1", ops)
    objects = fabric.objects("p1")
    tag = fabric.get("/v1/roots/p1")["etag"]
    groups = fabric.get("/v1/roots/p1/buckets", params={"depth": 1})
    buckets = fabric.get("/v1/roots/p1/buckets")
    assert groups["etag"] == buckets["etag"] == tag
    expected = {}
    for o in objects:
        name = bucket_name(bucket_of(o["kind"], o["id"]))
        expected[name] = add(expected.get(name, 0), int(o["digest"], 16))
    assert {b: int(s, 16) for b, s in buckets["buckets"].items()} == expected
    for group, total in groups["groups"].items():
        in_group = fabric.get("/v1/roots/p1/buckets", params={"prefix": group})["buckets"]
        assert in_group and all(b.startswith(group) for b in in_group)
        folded = 0
        for value in in_group.values():
            folded = add(folded, int(value, 16))
        assert folded == int(total, 16)
    name, total = next(iter(buckets["buckets"].items()))
    listing = fabric.get(f"/v1/roots/p1/buckets/{name}")
    assert listing["bucket"] == name and listing["sum"] == total
    assert {(e["kind"], e["id"]) for e in listing["objects"]} == \
        {(o["kind"], o["id"]) for o in objects if bucket_name(bucket_of(o["kind"], o["id"])) == name}
    full = fabric.get(f"/v1/roots/p1/buckets/{name}", params={"full": 1})
    assert all({"attributes", "revision", "digest"} <= set(e) for e in full["objects"])
    empty = next(bucket_name(b) for b in range(256) if bucket_name(b) not in expected)
    assert fabric.get(f"/v1/roots/p1/buckets/{empty}") == {"bucket": empty, "sum": "0" * 64, "objects": []}


def test_objects_are_paged_in_kind_id_order_and_their_digests_make_the_etag(fabric):
    ops = [network("n1"), network("n2"), subnet("s1", "n1"), subnet("s2", "n2"),
           put_op("security_group", "g1", name="web"),
           put_op("security_group_rule", "g1-r1", security_group_id="g1", port_range_max=443),
           put_op("router", "router-1"), put_op("router_interface", "ri-1", router_id="router-1", subnet_id="s1")]
    fabric.batch("p1", ops)
    pages = []
    params = {"limit": 3}
    while True:
        page = fabric.get("/v1/roots/p1/objects", params=params)
        pages.append(page["objects"])
        if page["next"] is None:
            break
        params["after"] = page["next"]
    objects = [o for page in pages for o in page]
    assert len(pages) == 3 and len(objects) == len(ops)
    assert [f"{o['kind']}/{o['id']}" for o in objects] == sorted(f"{o['kind']}/{o['id']}" for o in objects)
    assert expected_etag(objects) == fabric.get("/v1/roots/p1")["etag"]


def test_one_object_is_read_with_its_digest_and_status(fabric):
    fabric.batch("p1", [network("n1", mtu=1450)])
    found = fabric.get("/v1/roots/p1/objects/network/n1")
    assert found["object"] == {"kind": "network", "id": "n1", "attributes": {"mtu": 1450}, "revision": 1}
    assert found["status"] is None
    assert etag(int(found["digest"], 16)) == fabric.get("/v1/roots/p1")["etag"]
    with fabric.client() as client:
        assert_refused(client.get("/v1/roots/p2/objects/network/n1"), 404, "not_found")
        assert_refused(client.get("/v1/roots/p1/objects/network/n2"), 404, "not_found")


def test_every_batch_attempt_is_audited_with_its_writer(fabric):
    fabric.batch("p1", [network("n1")], writer="engine-a")
    fabric.batch("p1", [network("n2")], if_match=EMPTY, writer="engine-b")
    entries = fabric.get("/v1/audit")["entries"]
    assert [(e["root"], e["writer"], e["status"], e["operations"]) for e in entries] == \
        [("p1", "engine-a", 200, 1), ("p1", "engine-b", 412, 1)]
    assert entries[1]["if_match"] == EMPTY and entries[1]["etag"] == entries[0]["etag"]
    page = fabric.get("/v1/audit", params={"after": entries[0]["seq"], "limit": 1})
    assert [e["seq"] for e in page["entries"]] == [entries[1]["seq"]] and page["next"] is None


def test_metrics_need_the_token_and_count_batches(fabric):
    fabric.batch("p1", [network("n1"), network("n2")])
    fabric.batch("p1", [network("n3")], if_match=EMPTY)
    assert httpx.get(f"{fabric.url}/metrics").status_code == 401
    with fabric.client() as client:
        text = client.get("/metrics").text
    assert 'converge_fabric_batches_total{status="200"} 1.0' in text
    assert 'converge_fabric_batches_total{status="412"} 1.0' in text
    assert "converge_fabric_operations_applied_total 2.0" in text
    assert "converge_fabric_objects 2.0" in text


def test_a_group_listing_holds_exactly_the_objects_of_its_sixteen_buckets(fabric):
    fabric.batch("p1", [network(f"n{i}", name=f"net {i}") for i in range(60)])
    objects = fabric.objects("p1")
    groups = fabric.get("/v1/roots/p1/buckets", params={"depth": 1})["groups"]
    for group in "0123456789abcdef":
        listing = fabric.get(f"/v1/roots/p1/buckets/{group}")
        want = sorted((o["kind"], o["id"], o["digest"]) for o in objects
                      if bucket_name(bucket_of(o["kind"], o["id"]))[0] == group)
        assert sorted((e["kind"], e["id"], e["digest"]) for e in listing["objects"]) == want
        assert listing["group"] == group and int(listing["sum"], 16) == int(groups.get(group, "0" * 64), 16)
    with httpx.Client(headers=fabric.headers()) as http:
        assert http.get(f"{fabric.url}/v1/roots/p1/buckets/x").status_code == 404
