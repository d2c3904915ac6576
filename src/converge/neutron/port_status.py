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

**Ports reported up are completed in batches** (:class:`Coalescer`: the ports reported within
``window`` seconds of the oldest waiting one, at most ``max_batch``), on one thread of the listener's,
never on the backend's. Why: one port at a time, Neutron's ``provisioning_complete`` → ML2's
``_port_provisioned`` → ``update_port_status`` cost ~40 ms of CPU per port on the sync side, most of it
loading the whole port twice (every relationship, a query each) and a transaction per step; on a
machine shared with the API that CPU comes off port creates. :func:`complete` does the same work for a
batch: it removes Converge's blocks of all the ports in one transaction and reads, in the same one, what
``_port_provisioned`` checks (the port is bound, not failed, administratively up, not migrating, blocked
by no one else), then hands every port that passes to ML2's ``update_port_statuses`` (Neutron's own bulk
status update, the one the L2 agents' RPC uses): one load of all the ports, then Neutron's update of
each — its own transaction, revision bump, ``update_port_precommit``/``postcommit``, ``BEFORE_UPDATE``
and ``AFTER_UPDATE``, so the nova notifier still sends ``network-vif-plugged`` per port. Every other
port, and every port when some other code than ML2 listens for ``PROVISIONING_COMPLETE``, goes through
Neutron's per-port path (the event ``provisioning_complete`` publishes). A batch that fails is retried
port by port. Why not one transaction for the batch: Neutron refuses it (``provisioning_complete`` and
``update_port_statuses`` raise inside a transaction, so that postcommit hooks and ``AFTER_UPDATE`` run
after the commit), and a commit is a small part of the cost (profiled: ~3 % of the process). What stays
per port is Neutron's update itself, ~14 ms of CPU (``BEFORE_UPDATE``'s default security group lookup,
the binding levels, the flush); the load of the ports shrinks with the batch (BENCHMARKS.md, issue 8).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from neutron.db import models_v2, provisioning_blocks
from neutron.db.models.provisioning_block import ProvisioningBlock
from neutron.plugins.ml2.models import PortBinding
from neutron_lib import constants
from neutron_lib import context as n_context
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import events, registry, resources
from neutron_lib.db import api as db_api
from neutron_lib.plugins import directory
from sqlalchemy import and_, delete, select

from converge.backends.base import Backend, PortStatus
from converge.core.errors import ConvergeError
from converge.core.ids import ObjectId, RootId

log = logging.getLogger(__name__)

ENTITY = "converge"
NOT_BOUND = (portbindings.VIF_TYPE_UNBOUND, portbindings.VIF_TYPE_BINDING_FAILED)


def block(plugin_context: Any, port_id: str) -> None:
    """Called in the port's precommit when Converge binds it: hold it DOWN until the controller says up."""
    provisioning_blocks.add_provisioning_component(plugin_context, port_id, resources.PORT, ENTITY)


class Coalescer:
    """Port ids reported up, taken in batches: :meth:`take` returns once ``max_batch`` ids wait or
    ``window`` seconds have passed since the oldest one came; the same id twice is taken once."""

    def __init__(self, *, window: float = 0.05, max_batch: int = 100,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window, self.max_batch, self._clock = window, max_batch, clock
        self._waiting: dict[str, None] = {}  # insertion-ordered set
        self._oldest = 0.0
        self._busy = False  # a taken batch is being completed
        self._closed = False
        self._cond = threading.Condition()

    def put(self, port_id: str) -> None:
        with self._cond:
            if not self._waiting:
                self._oldest = self._clock()
            self._waiting[port_id] = None
            self._cond.notify_all()

    def take(self) -> list[str]:
        """The next batch (blocks until one is due); empty once closed."""
        with self._cond:
            while not self._closed:
                if self._waiting:
                    left = self._oldest + self.window - self._clock()
                    if len(self._waiting) >= self.max_batch or left <= 0:
                        batch = list(self._waiting)[:self.max_batch]
                        for port_id in batch:
                            del self._waiting[port_id]
                        self._oldest = self._clock()  # those left over wait a window from now
                        self._busy = True
                        return batch
                    self._cond.wait(left)
                else:
                    self._cond.wait()
            return []

    def done(self) -> None:
        """The batch last taken is completed."""
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Until nothing waits and no batch is being completed (False: ``timeout`` seconds passed)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._closed or not (self._waiting or self._busy), timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass(frozen=True)
class Completion:
    """What :func:`complete` did with each port of a batch."""

    updated: tuple[str, ...] = ()  # blocks removed, handed to ML2's update_port_statuses together
    per_port: tuple[str, ...] = ()  # blocks removed, handed to Neutron's per-port path (not the plain case)
    untouched: tuple[str, ...] = ()  # gone, still blocked by another entity, or ACTIVE already
    failed: tuple[str, ...] = ()  # the update raised, even alone (logged)


def complete(port_ids: Sequence[str]) -> Completion:
    """Remove Converge's provisioning block of each port and turn every port no longer blocked ACTIVE
    through Neutron, as ``provisioning_complete`` would for each (see the module's docstring)."""
    ctx = n_context.get_admin_context()
    with db_api.CONTEXT_WRITER.using(ctx):
        rows = ctx.session.execute(
            select(models_v2.Port.id, models_v2.Port.standard_attr_id, models_v2.Port.status,
                   models_v2.Port.admin_state_up, models_v2.Port.device_owner, PortBinding.vif_type,
                   PortBinding.profile)
            .outerjoin(PortBinding, and_(PortBinding.port_id == models_v2.Port.id,
                                         PortBinding.status == constants.ACTIVE))
            .where(models_v2.Port.id.in_(port_ids))).tuples().all()
        attr_ids = {row[0]: row[1] for row in rows}
        blocks = ctx.session.execute(select(ProvisioningBlock.standard_attr_id, ProvisioningBlock.entity).where(
            ProvisioningBlock.standard_attr_id.in_(attr_ids.values()))).tuples().all() if rows else []
        ours = [attr for attr, entity in blocks if entity == ENTITY]
        if ours:  # only the rows read: no gap lock to hold up the API's binding transactions meanwhile
            ctx.session.execute(delete(ProvisioningBlock).where(
                ProvisioningBlock.standard_attr_id.in_(ours), ProvisioningBlock.entity == ENTITY))
    blocked = {attr for attr, entity in blocks if entity != ENTITY}
    plugin = directory.get_plugin()
    bulk = _ml2_alone(plugin)
    found: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        if row[1] not in blocked:
            found.setdefault(row[0], []).append(row)
    untouched = [p for p in port_ids if p not in found]  # gone, or still blocked by another entity
    fast, slow = [], []
    for port_id in dict.fromkeys(p for p in port_ids if p in found):  # in the order reported
        bindings = found[port_id]
        if not (bulk and len(bindings) == 1 and _plain(*bindings[0][3:])):
            slow.append(port_id)
        elif bindings[0][2] == constants.PORT_STATUS_ACTIVE:
            untouched.append(port_id)
        else:
            fast.append(port_id)
    failed = _update(plugin, ctx, fast)
    for port_id in slow:
        try:  # what provisioning_complete publishes once the last block is gone
            registry.publish(resources.PORT, provisioning_blocks.PROVISIONING_COMPLETE, ENTITY,
                             payload=events.DBEventPayload(ctx, resource_id=port_id))
        except Exception:
            log.exception("port %s: Neutron failed to turn it ACTIVE", port_id)
            failed.append(port_id)
    return Completion(updated=tuple(p for p in fast if p not in failed),
                      per_port=tuple(p for p in slow if p not in failed), untouched=tuple(untouched),
                      failed=tuple(failed))


def _plain(admin_state_up: bool, device_owner: str, vif_type: str | None, profile: str | None) -> bool:
    """The case ML2's ``_port_provisioned`` ends in ``update_port_status(ACTIVE)`` without waiting or
    special handling: bound (not failed), administratively up, not migrating, no distributed binding."""
    if vif_type is None or vif_type in NOT_BOUND or not admin_state_up:
        return False
    if device_owner == constants.DEVICE_OWNER_DVR_INTERFACE:
        return False
    try:
        return not (profile and json.loads(profile).get("migrating_to"))
    except (ValueError, AttributeError):  # not a JSON object: let Neutron judge
        return False


def _ml2_alone(plugin: Any) -> bool:
    """Whether ML2's ``_port_provisioned`` is the one listener of a port's ``PROVISIONING_COMPLETE`` (so
    doing its work for a batch leaves no one out). Read from the callback registry's internals: anything
    unexpected there answers no, and every port takes the per-port path."""
    handler = getattr(plugin, "_port_provisioned", None)
    if handler is None or not hasattr(plugin, "update_port_statuses"):
        return False
    try:
        listeners = registry._get_callback_manager()._callbacks[resources.PORT][
            provisioning_blocks.PROVISIONING_COMPLETE]
        callbacks = [cb for group in listeners for cb in group.pri_callbacks.values()]
    except (AttributeError, KeyError, TypeError):
        return False
    return bool(callbacks) and all(cb == handler for cb in callbacks)


def _update(plugin: Any, ctx: Any, port_ids: list[str]) -> list[str]:
    """ML2's bulk status update; if it raises, each port again alone. The ports that failed alone."""
    if not port_ids:
        return []
    try:
        plugin.update_port_statuses(ctx, dict.fromkeys(port_ids, constants.PORT_STATUS_ACTIVE))
        return []
    except Exception:
        log.warning("turning %d ports ACTIVE together failed; trying each alone", len(port_ids), exc_info=True)
    failed = []
    for port_id in port_ids:  # those the batch updated are ACTIVE already: nothing changes for them
        try:
            plugin.update_port_statuses(ctx, {port_id: constants.PORT_STATUS_ACTIVE})
        except Exception:
            log.exception("port %s: Neutron failed to turn it ACTIVE", port_id)
            failed.append(port_id)
    return failed


class PortStatusListener:
    """Completes Converge's provisioning block of each port the backend reports up: the backend's
    callbacks only queue the port; a thread of the listener's completes them in batches."""

    def __init__(self, backend: Backend, *, resync_interval: float = 10.0, window: float = 0.05,
                 max_batch: int = 100) -> None:
        self.backend = backend
        self.resync_interval = resync_interval
        self.window, self.max_batch = window, max_batch
        self._queue = Coalescer(window=window, max_batch=max_batch)
        self._stop: Callable[[], None] | None = None
        self._stopped = threading.Event()

    def start(self) -> None:
        self._stopped.clear()
        self._queue = Coalescer(window=self.window, max_batch=self.max_batch)
        threading.Thread(target=self._completing, args=(self._queue,), name="converge-port-status",
                         daemon=True).start()
        self._stop = self.backend.follow_ports(on_up=self._queue.put, on_connect=self.resync)
        threading.Thread(target=self._periodically, name="converge-port-resync", daemon=True).start()

    def stop(self) -> None:
        """Stop following; ports still queued stay blocked, for the next start's resync."""
        self._stopped.set()
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()
        self._queue.close()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Until every port reported up so far is completed (tests; False on timeout)."""
        return self._queue.wait_idle(timeout)

    def _completing(self, queue: Coalescer) -> None:
        while batch := queue.take():
            try:
                done = complete(batch)
                log.info("ports reported up: %d turned ACTIVE in one bulk status update, %d through Neutron's "
                         "per-port path, %d left as they were, %d failed", len(done.updated), len(done.per_port),
                         len(done.untouched), len(done.failed))
            except Exception:  # the database may be away for a while: the resync finds these ports again
                log.warning("completing %d ports failed; the resync will retry them", len(batch), exc_info=True)
            finally:
                queue.done()

    def _periodically(self) -> None:
        while not self._stopped.wait(self.resync_interval):
            try:
                self.resync()
            except Exception:  # the database may be away for a while: try again next time
                log.warning("port status resync failed; trying again in %.0f s", self.resync_interval,
                            exc_info=True)

    def resync(self) -> None:
        """Queue every port Converge still blocks that the backend says is up."""
        ctx = n_context.get_admin_context()
        with db_api.CONTEXT_READER.using(ctx):
            rows = ctx.session.execute(
                select(models_v2.Port.id, models_v2.Port.project_id)
                .join(ProvisioningBlock, ProvisioningBlock.standard_attr_id == models_v2.Port.standard_attr_id)
                .where(ProvisioningBlock.entity == ENTITY)).all()
        queue = self._queue
        for port_id, project in rows:
            try:
                if self.backend.port_status(RootId(project), ObjectId(port_id)) is PortStatus.UP:
                    queue.put(port_id)
            except ConvergeError as err:
                log.info("port %s: cannot ask the controller yet (%s)", port_id, err)
                return
