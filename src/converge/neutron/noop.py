"""A mechanism driver that does nothing (entry point ``converge_noop``): the baseline the Neutron
benchmark measures Converge against — same API, same ML2, no intent written."""

from __future__ import annotations

from typing import Any

from neutron_lib.plugins.ml2 import api


class NoopMechanismDriver(api.MechanismDriver):  # type: ignore[misc]
    def initialize(self) -> None:
        pass

    def bind_port(self, context: Any) -> None:
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], "ovs", {"port_filter": True})
            return
