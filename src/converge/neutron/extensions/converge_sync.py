"""API extension ``converge-sync``: read-only ``converge:sync_state`` and ``converge:sync_error`` on
networks, subnets, ports, routers, floating IPs and security groups.

Both are policy-enforced (``converge.neutron.policies``: admin-only by default); lists can be filtered by
``converge:sync_state`` (``?converge:sync_state=error``), by those allowed to read it."""

from __future__ import annotations

from typing import Any

from neutron_lib.api import extensions

from converge.neutron.sync_state import ERROR, STATE

ALIAS = "converge-sync"
COLLECTIONS = ("networks", "subnets", "ports", "routers", "floatingips", "security_groups")
_ATTRIBUTE = {"allow_post": False, "allow_put": False, "is_visible": True, "default": None,
              "enforce_policy": True}
EXTENDED_ATTRIBUTES_2_0 = {c: {STATE: dict(_ATTRIBUTE, is_filter=True), ERROR: dict(_ATTRIBUTE, is_filter=False)}
                           for c in COLLECTIONS}


class Converge_sync(extensions.ExtensionDescriptor):  # type: ignore[misc]  # noqa: N801 - Neutron's naming
    @classmethod
    def get_name(cls) -> str:
        return "Converge sync state"

    @classmethod
    def get_alias(cls) -> str:
        return ALIAS

    @classmethod
    def get_description(cls) -> str:
        return "Whether Converge has made the SDN controller match this resource (synced, pending, error)."

    @classmethod
    def get_updated(cls) -> str:
        return "2026-11-21T00:00:00-00:00"

    def get_extended_resources(self, version: str) -> dict[str, Any]:
        return EXTENDED_ATTRIBUTES_2_0 if version == "2.0" else {}
