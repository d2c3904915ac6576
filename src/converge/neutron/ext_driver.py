"""The ML2 extension driver ``converge`` (entry point ``neutron.ml2.extension_drivers``): declares the
``converge-sync`` API extension and wires the sync-state attributes onto Neutron's models.

Enable it with ``[ml2] extension_drivers = …,converge``.
"""

from __future__ import annotations

import logging

from neutron.api import extensions as neutron_extensions
from neutron_lib.db import resource_extend
from neutron_lib.plugins.ml2 import api

from converge.core.kinds import Kind
from converge.neutron import extensions, sync_state
from converge.neutron.extensions.converge_sync import ALIAS

log = logging.getLogger(__name__)


def wire() -> None:
    """Attach the relationships and the extend functions (idempotent)."""
    from neutron.db import models_v2
    from neutron.db.models import l3, securitygroup

    for model, kind, collection in ((models_v2.Network, Kind.NETWORK, "networks"),
                                    (models_v2.Subnet, Kind.SUBNET, "subnets"),
                                    (models_v2.Port, Kind.PORT, "ports"),
                                    (l3.Router, Kind.ROUTER, "routers"),
                                    (l3.FloatingIP, Kind.FLOATING_IP, "floatingips"),
                                    (securitygroup.SecurityGroup, Kind.SECURITY_GROUP, "security_groups")):
        sync_state.attach(model, kind)
        if sync_state.extend not in resource_extend.get_funcs(collection):
            resource_extend.register_funcs(collection, [sync_state.extend])


class ConvergeExtensionDriver(api.ExtensionDriver):  # type: ignore[misc]
    _supported_extension_alias = ALIAS

    def initialize(self) -> None:
        neutron_extensions.append_api_extensions_path(list(extensions.__path__))
        wire()
        log.info("converge extension driver ready (%s)", ALIAS)

    @property
    def extension_alias(self) -> str:
        return ALIAS
