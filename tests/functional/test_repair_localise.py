"""Localising drift against the real controller process: ``GET /v1/roots/{root}/diff`` and ``/entries``
(docs/protocol.md), the fabric client's ``compare_groups``/``entries`` over them, and the engine's repair
through both: small roots localised in one call each, and a collision of cut sums (forced by a believed
digest one above the controller's) caught by the full ETag and repaired right."""

from pathlib import Path

import httpx
import pytest
from engine_support import (
    assert_converged,
    change,
    client,
    make_worker,
    new_store,
    record,
    settle,
)
from sqlalchemy import update

from converge.core import canonical, sums
from converge.core.ids import RootId
from converge.engine.repair import find_differences, localise
from converge.store.schema import status
from converge.testing.fabric import put_op


@pytest.fixture
def engine(tmp_path: Path):
    engine = new_store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    yield engine
    engine.dispose()


def networks(fabric, root, n):
    response = fabric.batch(root, [put_op("network", f"{root}-net-{i}", name=f"n{i}") for i in range(n)])
    assert response.status_code == 200, response.text
    return {(o["kind"], o["id"]): int(o["digest"], 16) for o in fabric.objects(root)}


def group_row(digests, width):
    buckets: dict[int, int] = {}
    for key, digest in digests.items():
        b = canonical.bucket_of(*key)
        buckets[b] = canonical.add(buckets.get(b, 0), digest)
    return sums.pack(sums.group_row(canonical.group_sums(buckets)), width)


def test_diff_lists_a_sparse_differing_group_and_narrows_a_dense_one(fabric):
    held = networks(fabric, "p1", 200)
    believed = dict(held)
    sparse_key = next(iter(held))
    sparse_group = f"{canonical.bucket_of(*sparse_key) >> 4:x}"
    del believed[sparse_key]
    answer = fabric.get("/v1/roots/p1/diff", {"width": 2, "groups": group_row(believed, 2), "list": 100})
    assert answer["etag"] == canonical.etag(canonical.combine(held.values()))
    assert answer["buckets"] == {}
    in_group = {k: d for k, d in held.items() if f"{canonical.bucket_of(*k) >> 4:x}" == sparse_group}
    listed = {f"{k}/{i}": canonical.hex256(d) for (k, i), d in sorted(in_group.items())}
    assert answer["listed"] == {sparse_group: listed}

    answer = fabric.get("/v1/roots/p1/diff", {"width": 2, "groups": group_row(believed, 2), "list": 2})
    assert answer["listed"] == {} and list(answer["buckets"]) == [sparse_group]
    row = sums.unpack(answer["buckets"][sparse_group], 2)
    bucket = canonical.bucket_of(*sparse_key)
    assert row[bucket % 16] == sums.truncate(sum(d for k, d in held.items() if canonical.bucket_of(*k) == bucket)
                                             % canonical.MODULUS, 2)
    listing = fabric.get("/v1/roots/p1/entries", {"buckets": f"{bucket:02x}"})["objects"]
    assert f"{sparse_key[0]}/{sparse_key[1]}" in listing

    same = fabric.get("/v1/roots/p1/diff", {"width": 32, "groups": group_row(held, 32)})
    assert same["listed"] == {} and same["buckets"] == {}


@pytest.mark.parametrize("path, params", [
    ("diff", {"width": 0, "groups": "0" * 32}),
    ("diff", {"width": 33, "groups": "0" * 1056}),
    ("diff", {"width": 2, "groups": "0" * 63}),
    ("diff", {"width": 1, "groups": "zz" * 16}),
    ("diff", {"width": 1}),
    ("entries", {"buckets": "0g"}),
    ("entries", {"buckets": "1,2"}),
    ("entries", {}),
])
def test_malformed_localising_queries_are_refused(fabric, path, params):
    response = httpx.get(f"{fabric.url}/v1/roots/p1/{path}", params=params, headers=fabric.headers(), timeout=10)
    assert response.status_code == 400 and response.json()["error"] == "bad_json", response.text


def test_a_forced_collision_costs_one_more_call_at_full_width_and_finds_the_difference(fabric):
    held = networks(fabric, "p1", 30)
    backend = client(fabric)
    try:
        victim = sorted(held)[4]
        believed = dict(held) | {victim: held[victim] + 1}  # differs below the first bytes of every sum
        assert localise(backend, RootId("p1"), believed, width=2)[1] == {}
        before = backend.traffic.requests
        etag, differing = find_differences(backend, RootId("p1"), believed)
        assert differing == {victim: held[victim]}
        assert etag == canonical.combine(held.values())
        assert backend.traffic.requests - before == 2  # the short pass, then one at full width
    finally:
        backend.close()


def synced(engine, fabric, changes):
    """Record ``changes`` and let a worker push them; it hands its roots over at once when done."""
    backend = client(fabric)
    worker = make_worker(engine, backend)
    try:
        record(engine, changes)
        settle(worker)
    finally:
        worker.shutdown()
        backend.close()


def repaired(engine, fabric):
    """A fresh worker's steps sweep, find the damaged roots and repair them; what it exchanged."""
    backend = client(fabric)
    worker = make_worker(engine, backend)
    try:
        settle(worker)
        assert_converged(engine, fabric)
        return backend.traffic
    finally:
        worker.shutdown()
        backend.close()


def test_drift_in_small_roots_is_repaired_with_one_localising_call_each(engine, fabric):
    synced(engine, fabric, [change(f"small-{r}", "network", f"small-{r}-net-{i}", name=f"n{i}")
                            for r in range(8) for i in range(20)])
    fabric.admin("POST", "drop", {"count": 3})
    fabric.admin("POST", "corrupt", {"count": 3})
    traffic = repaired(engine, fabric)
    assert "repair:diff" in traffic.by_purpose
    assert "repair:entries" not in traffic.by_purpose  # 20 objects a root: differing groups are listed


def test_a_collision_in_the_store_belief_is_repaired_right_by_the_worker(engine, fabric):
    synced(engine, fabric, [change("p1", "network", f"net-{i}", name=f"n{i}") for i in range(20)])
    [hit] = fabric.admin("POST", "corrupt", {"count": 1, "root": "p1"})["objects"]
    now = int(fabric.get(f"/v1/roots/p1/objects/{hit['kind']}/{hit['id']}")["digest"], 16)
    with engine.begin() as conn:  # the store believes a digest the cut sums cannot tell from the real one
        conn.execute(update(status).where(status.c.kind == hit["kind"], status.c.id == hit["id"])
                     .values(pushed_digest=canonical.hex256(now + 1)))
    repaired(engine, fabric)
    assert fabric.get(f"/v1/roots/p1/objects/{hit['kind']}/{hit['id']}")["object"]["attributes"] == {
        "name": f"n{hit['id'].split('-')[1]}"}
