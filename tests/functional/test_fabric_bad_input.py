"""Bad input gets the documented 4xx JSON error naming the problem: never a 500, never a partial batch,
and the controller keeps serving afterwards."""

import asyncio
import json
import os
import subprocess
import sys

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer

from converge.core.canonical import etag
from converge.fabric.app import create_app
from converge.fabric.httpio import Settings
from converge.fabric.state import Store
from converge.testing.fabric import put_op

EMPTY = etag(0)
GOOD = put_op("network", "good-net", 1, name="fine")


def op_body(*operations):
    return json.dumps({"operations": [GOOD, *operations]}).encode()


def assert_unharmed(fabric, before):
    """Nothing applied, still serving: the root is as it was and a good batch still goes through."""
    assert fabric.get("/v1/roots/p1") == before
    assert httpx.get(f"{fabric.url}/healthz").status_code == 200
    assert fabric.batch("p1", [put_op("network", "after", 1)]).status_code == 200


def seeded(fabric):
    assert fabric.batch("p1", [put_op("network", "n1", 1)]).status_code == 200
    return fabric.get("/v1/roots/p1")


def post(fabric, body, *, headers=None, root="p1"):
    sent = fabric.headers() | {"If-Match": fabric.get(f"/v1/roots/{root}")["etag"]} | (headers or {})
    return httpx.post(f"{fabric.url}/v1/roots/{root}/batch", content=body, headers=sent, timeout=10)


def check(response, status, code, index=None, mentions=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    if index is not ...:
        assert body.get("index") == index, body
    if mentions:
        assert mentions in body["message"], body
    return body


BODIES = [
    ("not JSON", b'{"operations": [', 400, "bad_json", None, "not JSON"),
    ("empty body", b"", 400, "bad_json", None, "empty"),
    ("not UTF-8", b'{"operations": ["\xff"]}', 400, "bad_json", None, None),
    ("a list, not an object", b"[]", 400, "bad_json", None, "operations"),
    ("operations not a list", b'{"operations": {}}', 400, "bad_json", None, "operations"),
    ("unknown top-level field", b'{"operations": [], "force": true}', 400, "bad_json", None, "force"),
    ("unknown op", op_body({"op": "patch"}), 400, "bad_json", 1, "op"),
    ("operation not an object", op_body(7), 400, "bad_json", 1, "operations[1]"),
    ("object missing revision", op_body({"op": "put", "object": {"kind": "network", "id": "x", "attributes": {}}}),
     400, "bad_json", 1, "revision"),
    ("unknown object field", op_body({"op": "put", "object": {**GOOD["object"], "id": "x", "status": "up"}}),
     400, "bad_json", 1, "status"),
    ("attributes not an object", op_body(put_op("network", "x") | {"object": {
        "kind": "network", "id": "x", "attributes": [], "revision": 0}}), 400, "bad_json", 1, "attributes"),
    ("negative revision", op_body({"op": "put", "object": {**GOOD["object"], "revision": -1}}),
     400, "bad_json", 1, "revision"),
    ("unknown kind", op_body(put_op("loadbalancer", "lb1")), 400, "unknown_kind", 1, "loadbalancer"),
    ("unknown kind in delete", op_body({"op": "delete", "kind": "vm", "id": "v"}), 400, "unknown_kind", 1, None),
    ("invalid id", op_body(put_op("network", "bad id!")), 400, "invalid_id", 1, "bad id!"),
    ("empty id", op_body({"op": "delete", "kind": "network", "id": ""}), 400, "invalid_id", 1, None),
    ("float attribute", op_body(put_op("network", "x", mtu=1500.0)), 400, "bad_json", 1, "mtu"),
    ("NaN attribute", op_body(put_op("network", "x")).replace(b'"attributes": {}', b'"attributes": {"a": NaN}'),
     400, "bad_json", 1, None),
    ("integer over 2**53", op_body(put_op("network", "x", size=2**60)), 400, "bad_json", 1, "size"),
    ("deep nesting", b'{"operations": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "bad_json", None, None),
    # Deep enough to hit a recursion limit either while decoding or while canonicalising: any index.
    ("deep attributes", op_body(put_op("network", "x", deep=0)).replace(b"0}", b"[" * 990 + b"]" * 990 + b"}"),
     400, "bad_json", ..., None),
    ("huge integer literal", b'{"operations": [' + b"9" * 10_000 + b"]}", 400, "bad_json", None, None),
    ("subnet cidr", op_body(put_op("subnet", "s", network_id="n1", cidr="10.0.0.300/24")),
     422, "invalid_object", 1, "cidr"),
    ("port mac", op_body(put_op("port", "q", network_id="n1", mac_address="zz:16:3e:00:00:01")),
     422, "invalid_object", 1, "mac_address"),
    ("network mtu", op_body(put_op("network", "x", mtu=9216)), 422, "invalid_object", 1, "mtu"),
    ("missing required reference", op_body(put_op("subnet", "s", cidr="10.0.0.0/24")),
     422, "invalid_object", 1, "network_id"),
    ("malformed reference", op_body(put_op("subnet", "s", network_id=["n1"])), 422, "invalid_object", 1, None),
]


@pytest.mark.parametrize(("body", "status", "code", "index", "mentions"),
                         [case[1:] for case in BODIES], ids=[case[0] for case in BODIES])
def test_bad_batch_bodies_are_refused_with_the_documented_error(fabric, body, status, code, index, mentions):
    before = seeded(fabric)
    check(post(fabric, body), status, code, index, mentions)
    assert_unharmed(fabric, before)


def test_a_batch_without_if_match_needs_one(fabric):
    before = seeded(fabric)
    response = httpx.post(f"{fabric.url}/v1/roots/p1/batch", content=op_body(), headers=fabric.headers())
    check(response, 428, "precondition_required", mentions=EMPTY)
    assert_unharmed(fabric, before)


def test_an_invalid_root_in_the_path_is_refused(fabric):
    before = seeded(fabric)
    response = httpx.post(f"{fabric.url}/v1/roots/bad%20root/batch", content=op_body(),
                          headers=fabric.headers() | {"If-Match": EMPTY})
    check(response, 400, "invalid_id", mentions="bad root")
    with fabric.client() as client:
        check(client.get("/v1/roots/-leading-dash"), 400, "invalid_id")
    assert_unharmed(fabric, before)


def test_oversized_bodies_and_batches_are_refused(fabric_factory):
    fabric = fabric_factory(extra_args=["--max-body", "20000", "--max-operations", "5"])
    before = seeded(fabric)
    big = op_body(put_op("network", "x", description="x" * 30_000))
    check(post(fabric, big), 413, "too_large")
    # Without Content-Length the limit applies while reading.
    chunks = iter([big[:10_000], big[10_000:]])
    check(post(fabric, chunks), 413, "too_large")
    many = op_body(*[put_op("network", f"x{i}") for i in range(5)])
    body = check(post(fabric, many), 413, "too_many_operations")
    assert body["limit"] == 5
    assert_unharmed(fabric, before)


def test_tokens_are_required_and_kept_apart(fabric):
    before = seeded(fabric)
    url = fabric.url
    check(httpx.get(f"{url}/v1/roots"), 401, "unauthorized")
    check(httpx.get(f"{url}/v1/roots", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
    check(httpx.get(f"{url}/v1/roots", headers={"Authorization": f"Basic {fabric.token}"}), 401, "unauthorized")
    check(httpx.get(f"{url}/v1/roots", headers=fabric.headers(admin=True)), 401, "unauthorized")
    check(httpx.get(f"{url}/v1/admin/faults", headers=fabric.headers()), 401, "unauthorized")
    check(httpx.get(f"{url}/v1/admin/faults"), 401, "unauthorized")
    check(httpx.get(f"{url}/v1/nowhere"), 401, "unauthorized")  # unauthenticated callers learn nothing
    check(httpx.post(f"{url}/v1/roots/p1/batch", content=op_body(),
                     headers={"If-Match": before["etag"], "Authorization": "Bearer wrong"}), 401, "unauthorized")
    response = httpx.get(f"{url}/v1/roots", headers={"Authorization": "Bearer \u00e9t\u00e9".encode()})
    check(response, 401, "unauthorized")
    assert httpx.get(f"{url}/v1/admin/faults", headers=fabric.headers(admin=True)).status_code == 200
    assert_unharmed(fabric, before)


def test_the_admin_api_does_not_exist_without_faults(fabric_factory):
    fabric = fabric_factory(faults=False)
    for headers in ({}, fabric.headers(), fabric.headers(admin=True)):
        check(httpx.post(f"{fabric.url}/v1/admin/wipe", headers=headers), 404, "not_found")
    assert fabric.get("/v1/roots") == {"roots": [], "next": None}


@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("GET", "/v1/nowhere", 404, "not_found"),
    ("DELETE", "/v1/roots/p1", 405, "method_not_allowed"),
    ("GET", "/v1/roots?limit=many", 400, "bad_json"),
    ("GET", "/v1/roots?limit=0", 400, "bad_json"),
    ("GET", "/v1/roots?after=bad%20id", 400, "invalid_id"),
    ("GET", "/v1/roots/p1/objects?after=network", 400, "invalid_id"),
    ("GET", "/v1/roots/p1/objects?after=vm/x", 400, "unknown_kind"),
    ("GET", "/v1/roots/p1/objects/vm/x", 400, "unknown_kind"),
    ("GET", "/v1/roots/p1/objects/network/bad%20id", 400, "invalid_id"),
    ("GET", "/v1/roots/p1/buckets?depth=3", 400, "bad_json"),
    ("GET", "/v1/roots/p1/buckets?prefix=g", 400, "bad_json"),
    ("GET", "/v1/roots/p1/buckets/zz", 404, "not_found"),
    ("GET", "/v1/roots/p1/buckets/100", 404, "not_found"),
    ("GET", "/v1/roots/p1/buckets/00?full=maybe", 400, "bad_json"),
    ("GET", "/v1/audit?after=x", 400, "bad_json"),
])
def test_bad_paths_and_query_parameters(fabric, method, path, status, code):
    before = seeded(fabric)
    with fabric.client() as client:
        check(client.request(method, path), status, code)
    assert_unharmed(fabric, before)


def test_bad_admin_requests_change_nothing(fabric):
    before = seeded(fabric)
    with fabric.client(admin=True) as admin:
        for body in (b"[]", b"{", json.dumps({"latency_ms": -1}).encode(), json.dumps({"error_rate": 2}).encode(),
                     json.dumps({"error_status": 404}).encode(), json.dumps({"hang": "yes"}).encode(),
                     json.dumps({"reject_name_pattern": "("}).encode(), json.dumps({"jitter": 1}).encode(),
                     json.dumps({"latency_ms": 5, "error_rate": 7}).encode()):
            check(admin.put("/v1/admin/faults", content=body), 400, "bad_json")
        check(admin.post("/v1/admin/drop", json={"count": -1}), 400, "bad_json")
        check(admin.post("/v1/admin/corrupt", json={"count": 1, "root": "bad root"}), 400, "invalid_id")
        check(admin.post("/v1/admin/refuse", json={"seconds": 0}), 400, "bad_json")
        assert admin.get("/v1/admin/faults").json()["latency_ms"] == 0
    assert_unharmed(fabric, before)


@pytest.mark.parametrize(("args", "env", "mentions"), [
    (["--listen", "0.0.0.0:0"], {"CONVERGE_FABRIC_TOKEN": "t"}, "--allow-non-loopback"),
    (["--listen", "nowhere"], {"CONVERGE_FABRIC_TOKEN": "t"}, "HOST:PORT"),
    ([], {}, "CONVERGE_FABRIC_TOKEN"),
    (["--token-file", "/nonexistent/token"], {}, "--token-file"),
    (["--faults"], {"CONVERGE_FABRIC_TOKEN": "t"}, "CONVERGE_FABRIC_ADMIN_TOKEN"),
])
def test_the_controller_refuses_to_start_misconfigured(tmp_path, args, env, mentions):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONVERGE_FABRIC_")} | env
    done = subprocess.run([sys.executable, "-m", "converge.fabric", "--db", str(tmp_path / "db"), *args],
                          env=clean, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert mentions in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unexpected_exception_is_a_logged_json_500_not_a_crash(tmp_path, caplog):
    """The catch-all middleware, in process: a handler bug answers {"error": "internal"} and is logged."""
    async def boom(request):
        raise RuntimeError("a bug")

    async def scenario():
        store = Store.open(tmp_path / "fabric.sqlite")
        app = create_app(Settings(token="t"), store)
        app.router.add_get("/v1/boom", boom)
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/v1/boom", headers={"Authorization": "Bearer t"})
            body = await response.json()
            healthy = (await client.get("/healthz")).status
        store.close()
        return response.status, body, healthy

    status, body, healthy = asyncio.run(scenario())
    assert status == 500 and body["error"] == "internal" and healthy == 200
    assert any("unexpected error answering GET /v1/boom" in r.getMessage() and r.exc_info for r in caplog.records)
