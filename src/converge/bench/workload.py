"""Realistic random Neutron changes over many roots, for ``converge load``, the demo, tests and benchmarks.

Seeded and pure: the same seed gives the same changes. Every change is valid in order: parents are
created before children, children are deleted or detached before their parents, so the controller
should accept all of it. Root ``<prefix>-admin`` owns an external network; floating IPs and router
gateways of other roots reference it across roots, as in a real cloud.
"""

from __future__ import annotations

import copy
import random
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from converge.core.kinds import Kind, parents
from converge.store.intent import Change
from converge.store.schema import JournalOp


@dataclass
class _Obj:
    kind: Kind
    id: str
    attrs: dict[str, Any]
    revision: int = 1
    referrers: set[str] = field(default_factory=set)


@dataclass
class _Root:
    name: str
    objects: dict[str, _Obj] = field(default_factory=dict)

    def of(self, kind: Kind) -> list[_Obj]:
        return [o for o in self.objects.values() if o.kind is kind]


class Workload:
    def __init__(self, roots: int, *, seed: int = 0, prefix: str = "project") -> None:
        self.rng = random.Random(seed)
        self.admin = _Root(f"{prefix}-admin")
        self.roots = [self.admin] + [_Root(f"{prefix}-{i:05d}") for i in range(max(0, roots - 1))]
        self.external: _Obj | None = None
        self.index: dict[str, tuple[_Root, _Obj]] = {}
        self._n = 0
        self._queue: deque[Change] = deque()  # made by a step but not yielded yet
        self._emitted: dict[tuple[str, str], tuple[str, dict[str, Any], int]] = {}

    # -- helpers -------------------------------------------------------------------------------------
    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _mac(self) -> str:
        return "fa:16:3e:" + ":".join(f"{self.rng.randrange(256):02x}" for _ in range(3))

    def _change(self, root: _Root, obj: _Obj, op: JournalOp) -> Change:
        return Change.build(root=root.name, kind_=obj.kind.value, id_=obj.id, op=op.value,
                            attributes=None if op is JournalOp.DELETE else obj.attrs, revision=obj.revision)

    def _create(self, root: _Root, kind: Kind, attrs: dict[str, Any], parents: list[_Obj]) -> Change:
        obj = _Obj(kind, self._uuid(), attrs)
        root.objects[obj.id] = obj
        self.index[obj.id] = (root, obj)
        for p in parents:
            p.referrers.add(obj.id)
        return self._change(root, obj, JournalOp.CREATE)

    def _delete(self, root: _Root, obj: _Obj) -> Change:
        del root.objects[obj.id]
        del self.index[obj.id]
        for _, pid in parents(obj.kind, obj.attrs):
            if pid in self.index:
                self.index[pid][1].referrers.discard(obj.id)
        obj.revision += 1
        return self._change(root, obj, JournalOp.DELETE)

    def _update(self, root: _Root, obj: _Obj, **attrs: Any) -> Change:
        obj.attrs.update(attrs)
        obj.revision += 1
        return self._change(root, obj, JournalOp.UPDATE)

    # -- kinds ---------------------------------------------------------------------------------------
    def _network(self, root: _Root, *, external: bool = False) -> list[Change]:
        seg = self.rng.randrange(1, 16_000_000)
        net = self._create(root, Kind.NETWORK, {
            "name": f"net-{self.rng.randrange(10_000)}", "admin_state_up": True, "mtu": 1450,
            "shared": False, "router:external": external, "provider:network_type": "vxlan",
            "provider:segmentation_id": seg, "description": "", "status": "ACTIVE"}, [])
        third = self.rng.randrange(256)
        sub = self._create(root, Kind.SUBNET, {
            "name": f"sub-{third}", "network_id": net.id, "cidr": f"10.{self.rng.randrange(256)}.{third}.0/24",
            "ip_version": 4, "gateway_ip": f"10.0.{third}.1", "enable_dhcp": True,
            "allocation_pools": [{"start": f"10.0.{third}.2", "end": f"10.0.{third}.254"}],
            "dns_nameservers": [], "host_routes": []}, [self.index[net.id][1]])
        return [net, sub]

    def _security_group(self, root: _Root) -> list[Change]:
        sg = self._create(root, Kind.SECURITY_GROUP, {"name": f"sg-{self.rng.randrange(1000)}",
                                                      "description": "", "stateful": True}, [])
        return [sg, self._rule(root, self.index[sg.id][1])]

    def _rule(self, root: _Root, sg: _Obj) -> Change:
        port = self.rng.choice([22, 80, 443, 3306, 5432, 8080])
        return self._create(root, Kind.SECURITY_GROUP_RULE, {
            "security_group_id": sg.id, "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
            "port_range_min": port, "port_range_max": port, "remote_ip_prefix": "0.0.0.0/0",
            "remote_group_id": None}, [sg])

    def _port(self, root: _Root) -> Change:
        sub = self.rng.choice(root.of(Kind.SUBNET))
        net = self.index[sub.attrs["network_id"]][1]
        sgs = root.of(Kind.SECURITY_GROUP)
        sg = self.rng.choice(sgs) if sgs else None
        return self._create(root, Kind.PORT, {
            "name": "", "network_id": net.id, "mac_address": self._mac(),
            "fixed_ips": [{"subnet_id": sub.id, "ip_address": f"10.0.0.{self.rng.randrange(2, 254)}"}],
            "admin_state_up": True, "device_owner": "compute:nova", "device_id": self._uuid(),
            "security_groups": [sg.id] if sg else [], "binding:host_id": f"compute-{self.rng.randrange(50)}",
            "binding:vnic_type": "normal", "port_security_enabled": True,
            "allowed_address_pairs": [], "description": ""}, [net, sub] + ([sg] if sg else []))

    def _router(self, root: _Root) -> list[Change]:
        ext = self.external
        router = self._create(root, Kind.ROUTER, {"name": f"router-{self.rng.randrange(100)}",
                                                  "admin_state_up": True, "distributed": False,
                                                  "external_network_id": ext.id if ext else None},
                              [ext] if ext else [])
        subs = [s for s in root.of(Kind.SUBNET)]
        if not subs:
            return [router]
        sub = self.rng.choice(subs)
        r = self.index[router.id][1]
        # mac_address and networks: what a controller that builds router ports needs (OVN's LRP)
        iface = self._create(root, Kind.ROUTER_INTERFACE, {"router_id": r.id, "subnet_id": sub.id,
                                                          "port_id": None, "mac_address": self._mac(),
                                                          "networks": [f"{sub.attrs['gateway_ip']}/24"]},
                             [r, sub])
        return [router, iface]

    def _floating_ip(self, root: _Root) -> Change | None:
        ports = [p for p in root.of(Kind.PORT) if not p.referrers]
        if self.external is None or not ports:
            return None
        port = self.rng.choice(ports)
        return self._create(root, Kind.FLOATING_IP, {
            "floating_network_id": self.external.id, "port_id": port.id,
            "floating_ip_address": f"172.24.{self.rng.randrange(256)}.{self.rng.randrange(2, 254)}",
            "fixed_ip_address": port.attrs["fixed_ips"][0]["ip_address"], "router_id": None,
            "description": ""}, [self.external, port])

    # -- the stream ----------------------------------------------------------------------------------
    def changes(self, count: int) -> Iterator[Change]:
        """The next ``count`` changes. A step that makes several changes (a network and its subnet) may be
        cut by ``count``: its remaining changes come first on the next call, never lost."""
        produced = 0
        if self.external is None:
            self._queue.extend(self._network(self.admin, external=True))
            self.external = self.index[self._queue[0].id][1]
        while produced < count:
            if not self._queue:
                self._queue.extend(self._step(self.rng.choice(self.roots)))
            ch = self._queue.popleft()
            self._emit(ch)
            yield ch
            produced += 1

    def _emit(self, ch: Change) -> None:
        key = (ch.kind.value, ch.id)
        if ch.op is JournalOp.DELETE:
            self._emitted.pop(key, None)
        else:
            self._emitted[key] = (ch.root, copy.deepcopy(dict(ch.attributes or {})), ch.revision)

    def _step(self, root: _Root) -> list[Change]:
        if not root.of(Kind.SUBNET):
            return self._network(root) + self._security_group(root)
        r = self.rng.random()
        ports = root.of(Kind.PORT)
        if r < 0.40 or not ports:
            return [self._port(root)]
        if r < 0.65:
            port = self.rng.choice(ports)
            return [self._update(root, port, name=f"vm-{self.rng.randrange(10_000)}",
                                 admin_state_up=self.rng.random() < 0.95)]
        if r < 0.75:
            free = [p for p in ports if not p.referrers]
            return [self._delete(root, self.rng.choice(free))] if free else [self._port(root)]
        if r < 0.83:
            sgs = root.of(Kind.SECURITY_GROUP)
            return [self._rule(root, self.rng.choice(sgs))] if sgs else self._security_group(root)
        if r < 0.88:
            return self._network(root)
        if r < 0.92:
            return self._router(root)
        if r < 0.97:
            fip = self._floating_ip(root)
            return [fip] if fip else [self._port(root)]
        fips = root.of(Kind.FLOATING_IP)
        if fips:
            return [self._delete(root, self.rng.choice(fips))]
        return [self._port(root)]

    def count(self, kind: Kind) -> int:
        """How many objects of ``kind`` the changes yielded so far leave."""
        return sum(1 for k, _ in self._emitted if k == kind.value)

    def desired(self) -> dict[tuple[str, str], tuple[str, dict[str, Any], int]]:
        """What the changes yielded so far add up to: (kind, id) -> (root, attributes, revision)."""
        return {key: (root, copy.deepcopy(attrs), rev) for key, (root, attrs, rev) in self._emitted.items()}
