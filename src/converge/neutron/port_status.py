"""Ports turn ACTIVE in Neutron only when the controller says they are up.

When Converge binds a port, its precommit adds a provisioning block (entity ``converge``); Neutron keeps
the port DOWN while any block remains. This listener, run by each sync worker process, follows the
controller's event stream and, for every ``port_status up``, completes Converge's block: Neutron's ML2
plugin (loaded in the same process) then sets the port ACTIVE. On every (re)connection it also asks the
controller about each port still blocked by Converge, so an event missed while disconnected (or older
than the controller's buffer) cannot leave a port DOWN for ever.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from neutron.db import models_v2, provisioning_blocks
from neutron.db.models.provisioning_block import ProvisioningBlock
from neutron_lib import context as n_context
from neutron_lib.callbacks import resources
from neutron_lib.db import api as db_api
from sqlalchemy import select

from converge.backends.fabric import FabricClient
from converge.backends.fabric.events import Event, EventStream
from converge.core.errors import ConvergeError
from converge.core.ids import RootId
from converge.core.kinds import Kind

log = logging.getLogger(__name__)

ENTITY = "converge"


def block(plugin_context: Any, port_id: str) -> None:
    """Called in the port's precommit when Converge binds it: hold it DOWN until the controller says up."""
    provisioning_blocks.add_provisioning_component(plugin_context, port_id, resources.PORT, ENTITY)


class PortStatusListener:
    def __init__(self, client: FabricClient, token: str) -> None:
        self.client = client
        self.stream = EventStream(client.urls, token, on_event=self._event, on_connect=self._resync)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.stream.run, name="converge-port-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stream.stop()

    def _event(self, event: Event) -> None:
        if event.type == "port_status" and event.data.get("status") == "up":
            self._complete(str(event.data["id"]))

    def _complete(self, port_id: str) -> None:
        provisioning_blocks.provisioning_complete(n_context.get_admin_context(), port_id, resources.PORT, ENTITY)

    def _resync(self) -> None:
        ctx = n_context.get_admin_context()
        with db_api.CONTEXT_READER.using(ctx):
            rows = ctx.session.execute(
                select(models_v2.Port.id, models_v2.Port.project_id)
                .join(ProvisioningBlock, ProvisioningBlock.standard_attr_id == models_v2.Port.standard_attr_id)
                .where(ProvisioningBlock.entity == ENTITY)).all()
        for port_id, project in rows:
            try:
                if self.client.object_status(RootId(project), Kind.PORT, port_id) == "up":
                    self._complete(port_id)
            except ConvergeError as err:
                log.info("port %s: cannot ask the controller yet (%s)", port_id, err)
                return
