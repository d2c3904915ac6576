"""Which ports Converge binds, and which hosts reach a network's segments (pure; unit-tested).

One answer serves both of ML2's questions, so scheduling and binding never disagree:

- ``bind_port``: Converge binds a port on the first of its segments whose type is in
  ``bind_network_types`` (a vlan or flat segment also needs its physical network in
  ``physical_networks``, when that option is set), and only for a host matching ``bind_hosts``.
- ``filter_hosts_with_segment_access``: of the candidate hosts (DHCP and L3 agent scheduling), those
  matching ``bind_hosts`` reach a network if one of its segments is bindable; none do otherwise.

Overriding the latter matters next to agent-based drivers: ML2 filters hosts only when every loaded
driver implements it, so inheriting neutron-lib's default would switch host filtering off for all.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PHYSICAL_TYPES = frozenset({"vlan", "flat"})  # segment types that name a physical network

# What ML2/OVN gives os-vif for an OVS port, so Nova plugs it into OVN's integration bridge the same way.
OVS_VIF_DETAILS: dict[str, Any] = {"port_filter": True, "connectivity": "l2", "bridge_name": "br-int",
                                   "datapath_type": "system"}


def vif_details(vif_type: str, configured: Mapping[str, str]) -> dict[str, Any]:
    """The binding's vif_details: ML2/OVN's for an ``ovs`` port, then ``[converge] vif_details`` over them
    (``true``/``false`` read as booleans, as os-vif expects ``port_filter``)."""
    details: dict[str, Any] = dict(OVS_VIF_DETAILS) if vif_type == "ovs" else {}
    for key, value in configured.items():
        text = str(value).strip()
        details[key] = {"true": True, "false": False}.get(text.lower(), text)
    return details


@dataclass(frozen=True)
class BindingPolicy:
    network_types: frozenset[str]
    physical_networks: frozenset[str]  # empty: any
    host_patterns: tuple[str, ...]  # shell-style; empty: any host

    @classmethod
    def from_options(cls, opts: Any) -> BindingPolicy:
        return cls(frozenset(opts.bind_network_types), frozenset(opts.physical_networks or ()),
                   tuple(opts.bind_hosts or ()))

    def serves_host(self, host: str | None) -> bool:
        if not self.host_patterns:
            return True
        return bool(host) and any(fnmatch.fnmatchcase(str(host), p) for p in self.host_patterns)

    def binds_segment(self, segment: Mapping[str, Any]) -> bool:
        kind = segment.get("network_type")
        if kind not in self.network_types:
            return False
        if kind in PHYSICAL_TYPES and self.physical_networks:
            return segment.get("physical_network") in self.physical_networks
        return True

    def segment_to_bind(self, host: str | None, segments: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
        """The segment a port on ``host`` is bound to, or None when Converge leaves it to other drivers."""
        if not self.serves_host(host):
            return None
        return next((s for s in segments if self.binds_segment(s)), None)

    def hosts_with_access(self, segments: Iterable[Mapping[str, Any]], candidates: Iterable[str]) -> set[str]:
        if not any(self.binds_segment(s) for s in segments):
            return set()
        return {h for h in candidates if self.serves_host(h)}
