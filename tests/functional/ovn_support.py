"""Shared helpers for the OVN backend's tests: Converge documents of every kind, an OVN control plane per
module, a TCP relay that can hold a writer's traffic (to make a transaction land late on purpose), and NB
reads through ``ovn-nbctl`` (what an operator would see).

Nothing here is mocked: NB, SB and northd are Debian's OVN 23.03 running as plain processes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from converge.backends.base import Delete, Put
from converge.backends.ovn import OvnBackend
from converge.core import canonical
from converge.core.canonical import ObjectDoc
from converge.core.ids import ObjectId, RootId
from converge.core.kinds import Kind
from converge.testing.ovn import OvnControlPlane

ROOT = RootId("project-a")


def doc(kind: Kind, oid: str, revision: int = 1, **attributes: Any) -> ObjectDoc:
    return ObjectDoc(kind, ObjectId(oid), attributes, revision)


def network(oid: str, **extra: Any) -> ObjectDoc:
    return doc(Kind.NETWORK, oid, name=f"net-{oid}", admin_state_up=True, mtu=1442, shared=False,
               **{"provider:network_type": "geneve", "router:external": False, **extra})


def subnet(oid: str, net: str, cidr: str, gateway: str | None, **extra: Any) -> ObjectDoc:
    attributes = {"network_id": net, "cidr": cidr, "ip_version": 4, "enable_dhcp": True, "name": "",
                  "description": "", **extra}
    if gateway:
        attributes["gateway_ip"] = gateway
    return doc(Kind.SUBNET, oid, **attributes)


def port(oid: str, net: str, mac: str, ips: Iterable[tuple[str, str]], groups: Iterable[str] = (),
         **extra: Any) -> ObjectDoc:
    return doc(Kind.PORT, oid, network_id=net, mac_address=mac, admin_state_up=True, description="",
               device_owner=extra.pop("device_owner", "compute:nova"), device_id=extra.pop("device_id", "vm-1"),
               fixed_ips=[{"subnet_id": s, "ip_address": ip} for s, ip in ips],
               security_groups=sorted(groups), port_security_enabled=True, **extra)


def group(oid: str) -> ObjectDoc:
    return doc(Kind.SECURITY_GROUP, oid, name=f"sg-{oid}", description="", stateful=True)


def rule(oid: str, sg: str, *, direction: str = "ingress", protocol: str | None = None,
         port_min: int | None = None, port_max: int | None = None, prefix: str | None = None,
         remote_group: str | None = None, ethertype: str = "IPv4") -> ObjectDoc:
    attributes: dict[str, Any] = {"security_group_id": sg, "direction": direction, "ethertype": ethertype,
                                  "description": ""}
    for name, value in (("protocol", protocol), ("port_range_min", port_min), ("port_range_max", port_max),
                        ("remote_ip_prefix", prefix), ("remote_group_id", remote_group)):
        if value is not None:
            attributes[name] = value
    return doc(Kind.SECURITY_GROUP_RULE, oid, **attributes)


def puts(*docs: ObjectDoc) -> list[Put]:
    return [Put(d) for d in docs]


def deletes(*docs: ObjectDoc) -> list[Delete]:
    return [Delete(d.kind, d.id) for d in docs]


def fingerprint(*docs: ObjectDoc) -> int:
    return canonical.combine(d.digest() for d in docs)


def eventually(probe: Callable[[], Any], what: str, deadline: float = 30.0) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        result = probe()
        if result:
            return result
        time.sleep(0.02)
    pytest.fail(f"timed out after {deadline:.0f} s waiting for {what}")


def nb_names(ovn: OvnControlPlane, table: str) -> set[str]:
    out = ovn.nbctl("--bare", "--columns=name", "list", table)
    return {line.strip() for line in out.splitlines() if line.strip()}


def nb_count(ovn: OvnControlPlane, table: str) -> int:
    out = ovn.nbctl("--bare", "--columns=_uuid", "list", table)
    return len([line for line in out.splitlines() if line.strip()])


def connect(ovn: OvnControlPlane, remote: str | None = None, **options: Any) -> OvnBackend:
    backend = OvnBackend([remote or ovn.nb_tcp], timeout=options.pop("timeout", 5.0), **options)
    eventually(backend.connected, "the backend's replica of NB")
    return backend


class Relay:
    """A loopback TCP relay in front of NB whose client→server direction can be held and released, so a
    writer's transaction reaches NB late, after another writer's."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def remote(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if upstream:
                    self.open.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._stop.set()
        self.open.set()
        self.listener.close()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.close()


def iter_rows(text: str) -> Iterator[str]:
    yield from (line.strip() for line in text.splitlines() if line.strip())
