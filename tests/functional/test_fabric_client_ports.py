"""The fabric backend's side of the protocol's port and drift methods, against the real controller: a batch
carries the writer's epoch (the fence is tested in test_fabric_fence.py), ``port_status`` reads a port's
status, ``follow_ports`` reports ports going up and every (re)connection, including after a controller
restart."""

from __future__ import annotations

import threading

from engine_support import eventually

from converge.backends.base import Put
from converge.backends.fabric import FabricClient
from converge.core import canonical
from converge.core.canonical import ObjectDoc
from converge.core.ids import ObjectId, RootId
from converge.core.kinds import Kind

ROOT = RootId("p1")


def docs() -> list[ObjectDoc]:
    return [ObjectDoc(Kind.NETWORK, ObjectId("n1"), {"name": "n"}, 1),
            ObjectDoc(Kind.PORT, ObjectId("port-1"), {"network_id": "n1"}, 1)]


def test_ports_are_followed_and_read_through_the_backend(fabric):
    client = FabricClient([fabric.url], fabric.token, writer="test")
    up: list[ObjectId] = []
    connected = threading.Event()
    lock = threading.Lock()

    def on_up(port: ObjectId) -> None:
        with lock:
            up.append(port)

    stop = client.follow_ports(on_up=on_up, on_connect=connected.set)
    try:
        assert connected.wait(20), "the event stream never connected"
        assert client.port_status(ROOT, ObjectId("port-1")) is None
        etag = client.apply(ROOT, if_match=0, operations=[Put(d) for d in docs()], epoch=7)
        assert etag == canonical.combine(d.digest() for d in docs())
        eventually(lambda: up == ["port-1"], "port-1 reported up")
        assert client.port_status(ROOT, ObjectId("port-1")).value == "up"

        connected.clear()
        fabric.restart()
        assert connected.wait(30), "no on_connect after the controller restarted"
    finally:
        stop()
        client.close()


def test_the_fabric_backend_never_calls_a_drift_callback(fabric):
    """The fabric protocol pushes nothing about foreign changes: the sweep finds them instead."""
    client = FabricClient([fabric.url], fabric.token, writer="test")
    called: list[RootId] = []
    client.on_drift(called.append)
    client.apply(ROOT, if_match=0, operations=[Put(docs()[0])])
    fabric.batch(ROOT, [{"op": "delete", "kind": "network", "id": "n1"}],
                 if_match=canonical.etag(docs()[0].digest()))  # behind the client's back
    assert client.root_etag(ROOT) == 0
    assert called == []
    client.close()
