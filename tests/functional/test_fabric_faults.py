"""Fault injection, persistence, port status events and log hygiene of the reference controller."""

import json
import socket
import threading
import time

import httpx
import pytest

from converge.core.canonical import etag
from converge.testing.fabric import delete_op, expected_etag, put_op

EMPTY = etag(0)
DEADLINE = 20.0


def eventually(probe, what):
    """Poll ``probe`` until it returns a truthy value; fail after DEADLINE seconds."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def populate(fabric, root="p1", networks=6):
    ops = [put_op("network", f"{root}-n{i}", 1, name=f"net {i}") for i in range(networks)]
    ops += [put_op("subnet", f"{root}-s{i}", 1, network_id=f"{root}-n{i}", cidr=f"10.0.{i}.0/24")
            for i in range(networks)]
    assert fabric.batch(root, ops).status_code == 200


def assert_sums_true(fabric, root):
    """The controller's ETag and sums equal what the objects it serves add up to."""
    objects = fabric.objects(root)
    current = fabric.get(f"/v1/roots/{root}")
    assert current["etag"] == expected_etag(objects) and current["objects"] == len(objects)
    buckets = fabric.get(f"/v1/roots/{root}/buckets")["buckets"]
    for name, total in buckets.items():
        assert fabric.get(f"/v1/roots/{root}/buckets/{name}")["sum"] == total
    return objects


def sse_events(response):
    """Yield each event of an SSE stream as a dict of its fields; comments as {"comment": text}."""
    fields = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
        elif not line:
            if fields:
                yield fields
            fields = {}
        else:
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


def next_event(events):
    return next(e for e in events if "comment" not in e)


def test_latency_delays_calls_but_not_the_admin_api(fabric):
    fabric.admin("PUT", "faults", {"latency_ms": 300})
    started = time.monotonic()
    assert fabric.get("/v1/roots/p1")["objects"] == 0
    assert time.monotonic() - started >= 0.3  # a lower bound the sleep guarantees, not a performance claim
    assert fabric.admin("PUT", "faults", {"latency_ms": 0})["latency_ms"] == 0


@pytest.mark.parametrize("status", [500, 503])
def test_error_rate_one_answers_the_configured_status_and_applies_nothing(fabric, status):
    populate(fabric)
    before = fabric.get("/v1/roots/p1")
    fabric.admin("PUT", "faults", {"error_rate": 1.0, "error_status": status})
    response = fabric.batch("p1", [put_op("network", "extra", 1)], if_match=before["etag"])
    assert response.status_code == status
    assert response.json()["error"] == "injected_fault"
    with fabric.client() as client:
        assert client.get("/v1/roots/p1").status_code == status
    fabric.admin("PUT", "faults", {"error_rate": 0})
    assert fabric.get("/v1/roots/p1") == before


def test_hang_holds_calls_until_cleared(fabric):
    fabric.admin("PUT", "faults", {"hang": True})
    with pytest.raises(httpx.ReadTimeout), fabric.client(timeout=0.5) as client:
        client.get("/v1/roots/p1")
    held = {}

    def call():
        with fabric.client(timeout=DEADLINE) as client:
            held["response"] = client.get("/v1/roots/p1")

    waiter = threading.Thread(target=call)
    waiter.start()
    assert httpx.get(f"{fabric.url}/healthz").status_code == 200  # the loop itself is not blocked
    assert fabric.admin("GET", "faults")["hang"] is True
    fabric.admin("PUT", "faults", {"hang": False})
    waiter.join(DEADLINE)
    assert held["response"].status_code == 200


def test_refuse_closes_the_socket_then_listens_again_on_the_same_port(fabric):
    populate(fabric)
    before = fabric.get("/v1/roots/p1")
    url = fabric.url
    assert fabric.admin("POST", "refuse", {"seconds": 1.5}) == {"seconds": 1.5}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz")

    def back():
        try:
            return httpx.get(f"{url}/healthz").status_code == 200
        except httpx.ConnectError:
            return False

    eventually(back, "the controller to listen again")
    assert fabric.get("/v1/roots/p1") == before


def test_wipe_forgets_everything(fabric):
    populate(fabric, "p1")
    populate(fabric, "p2")
    assert fabric.admin("POST", "wipe") == {"removed": 24}
    assert fabric.get("/v1/roots") == {"roots": [], "next": None}
    assert fabric.get("/v1/roots/p1")["etag"] == EMPTY
    assert fabric.objects("p1") == []
    writers = {(e["root"], e["writer"]) for e in fabric.get("/v1/audit")["entries"]}
    assert {("p1", "fault:wipe"), ("p2", "fault:wipe")} <= writers
    assert fabric.batch("p1", [put_op("network", "p1-n0", 1)], if_match=EMPTY).status_code == 200


def test_drop_removes_random_objects_and_the_etag_tells(fabric):
    populate(fabric, "p1")
    populate(fabric, "p2")
    other = fabric.get("/v1/roots/p2")
    before = fabric.get("/v1/roots/p1")
    dropped = fabric.admin("POST", "drop", {"count": 3, "root": "p1"})["objects"]
    assert len(dropped) == 3 and all(d["root"] == "p1" for d in dropped)
    objects = assert_sums_true(fabric, "p1")
    assert len(objects) == before["objects"] - 3
    assert not {(d["kind"], d["id"]) for d in dropped} & {(o["kind"], o["id"]) for o in objects}
    assert fabric.get("/v1/roots/p2") == other
    # Dropped objects are simply absent: the writer can put them back.
    assert fabric.admin("POST", "drop", {"count": 100})["objects"]
    assert fabric.get("/v1/roots") == {"roots": [], "next": None}


def test_corrupt_changes_digests_and_the_etag_stays_true(fabric):
    populate(fabric)
    before = {(o["kind"], o["id"]): o for o in fabric.objects("p1")}
    old_etag = fabric.get("/v1/roots/p1")["etag"]
    corrupted = fabric.admin("POST", "corrupt", {"count": 2})["objects"]
    assert len(corrupted) == 2
    after = {(o["kind"], o["id"]): o for o in assert_sums_true(fabric, "p1")}
    assert after.keys() == before.keys()
    changed = {key for key in after if after[key]["digest"] != before[key]["digest"]}
    assert changed == {(c["kind"], c["id"]) for c in corrupted}
    assert fabric.get("/v1/roots/p1")["etag"] != old_etag


def test_reject_name_pattern_refuses_matching_names(fabric):
    fabric.admin("PUT", "faults", {"reject_name_pattern": "^forbidden"})
    response = fabric.batch("p1", [put_op("network", "a", 1, name="ok"), put_op("network", "b", 1, name="forbidden-1")])
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_object" and body["index"] == 1 and "name" in body["message"]
    assert fabric.get("/v1/roots/p1")["objects"] == 0
    fabric.admin("PUT", "faults", {"reject_name_pattern": None})
    assert fabric.batch("p1", [put_op("network", "b", 1, name="forbidden-1")]).status_code == 200


def test_state_persists_across_restart_on_the_same_port(fabric):
    populate(fabric)
    fabric.batch("p1", [put_op("port", "q1", 1, network_id="p1-n0")])
    eventually(lambda: fabric.get("/v1/roots/p1/objects/port/q1")["status"] == "up", "port q1 up")
    before, objects, url = fabric.get("/v1/roots/p1"), fabric.objects("p1"), fabric.url
    buckets = fabric.get("/v1/roots/p1/buckets")
    fabric.restart()
    assert fabric.url == url
    assert fabric.get("/v1/roots/p1") == before
    assert fabric.objects("p1") == objects
    assert fabric.get("/v1/roots/p1/buckets") == buckets
    assert fabric.get("/v1/roots/p1/objects/port/q1")["status"] == "up"
    assert fabric.batch("p1", [delete_op("subnet", "p1-s0")]).status_code == 200


def test_a_port_is_down_until_its_delay_has_passed(fabric_factory):
    fabric = fabric_factory(port_up_delay=600)
    fabric.batch("p1", [put_op("network", "n1"), put_op("port", "q1", network_id="n1")])
    assert fabric.get("/v1/roots/p1/objects/port/q1")["status"] == "down"
    fabric.restart()  # a restart re-arms the delay rather than forgetting the port
    assert fabric.get("/v1/roots/p1/objects/port/q1")["status"] == "down"


def test_port_up_events_are_streamed_and_replayed_after_last_event_id(fabric):
    fabric.batch("p1", [put_op("network", "n1")])
    timeout = httpx.Timeout(DEADLINE)
    with fabric.client(timeout=timeout) as client:
        with client.stream("GET", "/v1/events") as stream:
            events = sse_events(stream)
            assert next(events) == {"comment": "connected"}
            fabric.batch("p1", [put_op("port", "gone", network_id="n1")])
            fabric.batch("p1", [delete_op("port", "gone")])  # deleted before its delay: never up
            fabric.batch("p1", [put_op("port", "q1", network_id="n1")])
            first = next_event(events)
        assert first["event"] == "port_status"
        assert json.loads(first["data"]) == {"root": "p1", "kind": "port", "id": "q1", "status": "up"}
        # A replace of an existing port does not make a new event; a new port while disconnected does.
        fabric.batch("p1", [put_op("port", "q1", 2, network_id="n1", name="renamed"),
                            put_op("port", "q2", network_id="n1")])
        eventually(lambda: fabric.get("/v1/roots/p1/objects/port/q2")["status"] == "up", "port q2 up")
        with client.stream("GET", "/v1/events", headers={"Last-Event-ID": first["id"]}) as stream:
            events = sse_events(stream)
            missed = next_event(events)
        assert int(missed["id"]) == int(first["id"]) + 1
        assert json.loads(missed["data"])["id"] == "q2"


def test_keepalive_comments_flow_on_an_idle_stream(fabric_factory):
    fabric = fabric_factory(extra_args=["--sse-keepalive", "0.1"])
    with fabric.client(timeout=DEADLINE) as client, client.stream("GET", "/v1/events") as stream:
        events = sse_events(stream)
        assert next(events) == {"comment": "connected"}
        assert next(events) == {"comment": "keepalive"}


def test_tokens_never_appear_in_the_log(fabric):
    populate(fabric)
    httpx.get(f"{fabric.url}/v1/roots", headers={"Authorization": f"Bearer {fabric.admin_token}"})
    httpx.get(f"{fabric.url}/v1/admin/faults", headers={"Authorization": f"Bearer {fabric.token}"})
    fabric.admin("PUT", "faults", {"latency_ms": 1})
    fabric.admin("POST", "corrupt", {"count": 1})
    with fabric.client() as client:
        client.get("/metrics")
        client.get("/v1/audit")
    # A request aiohttp cannot parse: its parser error would quote the offending header line.
    with socket.create_connection(("127.0.0.1", fabric.port)) as raw:
        raw.sendall(b"GET /v1/roots HTTP/1.1\r\nAuthorization: Bearer " + fabric.token.encode() + b"\x01\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.0 400")
    fabric.stop()
    log = fabric.log_path.read_text()
    assert "POST /v1/roots/p1/batch" in log  # the access log is there, only without headers
    assert fabric.token not in log and fabric.admin_token not in log
    assert "Authorization" not in log and "Bearer" not in log
