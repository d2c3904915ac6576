"""Ports turn ACTIVE in Neutron only when the controller says they are up.

When Converge binds a port, its precommit adds a provisioning block (entity ``converge``); Neutron keeps
the port DOWN while any block remains. This listener, run by each sync worker process, follows the
backend's port events (``Backend.follow_ports``: the fabric controller's event stream, OVN's
``Logical_Switch_Port.up``) and, for every port reported up, completes Converge's block: Neutron's ML2
plugin (loaded in the same process) then sets the port ACTIVE. On every (re)connection it also asks the
backend about each port still blocked by Converge (``Backend.port_status``), so an event missed while
disconnected (or older than the controller's buffer) cannot leave a port DOWN for ever — and again every
``resync_interval`` seconds, for the event that came before the block: a port pushed at create time
can be reported up before the binding transaction (another process) has added its block, and that
event then completed nothing (seen in a loaded demo run: one port of six stayed DOWN).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from neutron.db import models_v2, provisioning_blocks
from neutron.db.models.provisioning_block import ProvisioningBlock
from neutron_lib import context as n_context
from neutron_lib.callbacks import resources
from neutron_lib.db import api as db_api
from sqlalchemy import select

from converge.backends.base import Backend, PortStatus
from converge.core.errors import ConvergeError
from converge.core.ids import ObjectId, RootId

log = logging.getLogger(__name__)

ENTITY = "converge"


def block(plugin_context: Any, port_id: str) -> None:
    """Called in the port's precommit when Converge binds it: hold it DOWN until the controller says up."""
    provisioning_blocks.add_provisioning_component(plugin_context, port_id, resources.PORT, ENTITY)


class PortStatusListener:
    """Completes Converge's provisioning block of each port the backend reports up; the callbacks run on
    the backend's thread."""

    def __init__(self, backend: Backend, *, resync_interval: float = 10.0) -> None:
        self.backend = backend
        self.resync_interval = resync_interval
        self._stop: Callable[[], None] | None = None
        self._stopped = threading.Event()

    def start(self) -> None:
        self._stopped.clear()
        self._stop = self.backend.follow_ports(on_up=self._complete, on_connect=self.resync)
        threading.Thread(target=self._periodically, name="converge-port-resync", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()

    def _periodically(self) -> None:
        while not self._stopped.wait(self.resync_interval):
            try:
                self.resync()
            except Exception:  # the database may be away for a while: try again next time
                log.warning("port status resync failed; trying again in %.0f s", self.resync_interval,
                            exc_info=True)

    def _complete(self, port_id: str) -> None:
        provisioning_blocks.provisioning_complete(n_context.get_admin_context(), port_id, resources.PORT, ENTITY)

    def resync(self) -> None:
        """Complete the block of every port Converge still blocks that the backend says is up."""
        ctx = n_context.get_admin_context()
        with db_api.CONTEXT_READER.using(ctx):
            rows = ctx.session.execute(
                select(models_v2.Port.id, models_v2.Port.project_id)
                .join(ProvisioningBlock, ProvisioningBlock.standard_attr_id == models_v2.Port.standard_attr_id)
                .where(ProvisioningBlock.entity == ENTITY)).all()
        for port_id, project in rows:
            try:
                if self.backend.port_status(RootId(project), ObjectId(port_id)) is PortStatus.UP:
                    self._complete(port_id)
            except ConvergeError as err:
                log.info("port %s: cannot ask the controller yet (%s)", port_id, err)
                return
