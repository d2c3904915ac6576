"""The ML2 mechanism driver ``converge`` (entry point ``neutron.ml2.mechanism_drivers``).

Precommit hooks record intent in Neutron's transaction (one desired-row upsert and one journal row per
change) and do nothing else: no controller I/O ever happens on the API path. Postcommit hooks only wake
the workers. ``bind_port`` binds geneve, vxlan, vlan and flat segments with the configured vif_type and,
for ``ovs``, ML2/OVN's vif_details (port filter, l2 connectivity, ``br-int``, so os-vif plugs the port into
OVN's integration bridge) — only for the hosts and physical networks it serves (``converge.neutron.binding``,
which also answers ML2's host filtering); bound and unbound ports both reach the controller. Every API worker, the
periodic-workers process and any agent may load this driver: ``initialize`` holds no shared state beyond
the process.

**An update that changes nothing in intent records nothing.** ``update_*_precommit`` translates the
resource and, when it travels unchanged from ``context.original``, compares it with the object's desired
row (``store.intent.already_recorded``: one primary-key read); when root and attributes are the same there
too, it writes no row. The common case is a port turning ACTIVE (``provisioning_complete`` →
``update_port_status`` → ``update_port_precommit``: ``status`` does not travel), which used to cost a
desired upsert and a journal row in that transaction and a whole push of an unchanged port (its document
carries the revision, so its digest moved).

Why against intent, not against ``context.original``: Neutron sometimes writes a port change in a
transaction of its own, with no port hook, and then calls ``update_port`` with nothing to change so that
drivers hear of it (an IPv6 auto-address subnet added to a network gives every port on it an address this
way). There ``original`` already equals ``current``; intent does not. (An update that changes what travels
records at once, without the read.) Why skipping is safe: what it leaves out would write exactly the
attributes intent already holds; only the revision stays lower, and the ordering guard only needs later
changes to carry higher revisions, which they still do. The provisioning block does not depend on the
journal: it is added whenever Converge binds a port, recorded or not.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from neutron_lib.plugins.ml2 import api
from oslo_config import cfg

from converge.core.kinds import Kind
from converge.neutron import binding, config, port_status, recorder, secgroups, subnets, translate
from converge.neutron.worker import SyncWorker
from converge.store import intent

log = logging.getLogger(__name__)


def same_for_the_controller(kind: Kind, original: Mapping[str, Any] | None, current: Mapping[str, Any]) -> bool:
    """This transaction changed nothing that travels (root, attributes): only then is intent read, so an
    update that does change something costs no extra query."""
    return original is not None and (translate.root_of(original), translate.attributes(kind, original)) == (
        translate.root_of(current), translate.attributes(kind, current))


class ConvergeMechanismDriver(api.MechanismDriver):  # type: ignore[misc]
    def initialize(self) -> None:
        config.register(cfg.CONF)
        secgroups.subscribe()
        subnets.subscribe()
        log.info("converge mechanism driver ready (controllers: %s)", ", ".join(cfg.CONF.converge.controller_urls))

    # -- intent --------------------------------------------------------------------------------------
    def _put(self, context: Any, kind: Kind, *, created: bool) -> None:
        current = context.current
        changes = recorder.build(lambda: translate.upsert(kind, current, created=created))
        if not created and same_for_the_controller(kind, context.original, current):
            session = context._plugin_context.session
            changes = [c for c in changes if not intent.already_recorded(session, c)]
        recorder.record_in(context._plugin_context, changes)

    def _delete(self, context: Any, kind: Kind) -> None:
        current = context.current
        recorder.record_in(context._plugin_context, recorder.build(
            lambda: translate.delete(kind, current, oid=current["id"], root=translate.root_of(current))))

    def create_network_precommit(self, context: Any) -> None:
        self._put(context, Kind.NETWORK, created=True)

    def update_network_precommit(self, context: Any) -> None:
        self._put(context, Kind.NETWORK, created=False)

    def delete_network_precommit(self, context: Any) -> None:
        self._delete(context, Kind.NETWORK)

    def create_subnet_precommit(self, context: Any) -> None:
        self._put(context, Kind.SUBNET, created=True)

    def update_subnet_precommit(self, context: Any) -> None:
        self._put(context, Kind.SUBNET, created=False)

    def delete_subnet_precommit(self, context: Any) -> None:
        self._delete(context, Kind.SUBNET)

    def create_port_precommit(self, context: Any) -> None:
        self._put(context, Kind.PORT, created=True)

    def update_port_precommit(self, context: Any) -> None:
        self._put(context, Kind.PORT, created=False)
        opts = cfg.CONF.converge
        newly_bound = context.vif_type == opts.vif_type and (
            context.original_vif_type != context.vif_type or context.host != context.original_host)
        if newly_bound:
            port_status.block(context._plugin_context, context.current["id"])

    def delete_port_precommit(self, context: Any) -> None:
        self._delete(context, Kind.PORT)

    # -- after commit: only wake the workers ---------------------------------------------------------
    def create_network_postcommit(self, context: Any) -> None:
        recorder.nudge()

    update_network_postcommit = delete_network_postcommit = create_network_postcommit
    create_subnet_postcommit = update_subnet_postcommit = delete_subnet_postcommit = create_network_postcommit
    create_port_postcommit = update_port_postcommit = delete_port_postcommit = create_network_postcommit

    # -- binding -------------------------------------------------------------------------------------
    def bind_port(self, context: Any) -> None:
        opts = cfg.CONF.converge
        segment = binding.BindingPolicy.from_options(opts).segment_to_bind(context.host, context.segments_to_bind)
        if segment is None:
            log.debug("converge: leaves port %s on host %s to other drivers (bind_hosts, bind_network_types, "
                      "physical_networks)", context.current["id"], context.host)
            return
        context.set_binding(segment[api.ID], opts.vif_type, binding.vif_details(opts.vif_type, opts.vif_details))

    def filter_hosts_with_segment_access(self, context: Any, segments: Any, candidate_hosts: Any,
                                         agent_getter: Any) -> set[str]:
        """The candidate hosts Converge would bind a port of these segments for (agent scheduling)."""
        return binding.BindingPolicy.from_options(cfg.CONF.converge).hosts_with_access(segments, candidate_hosts)

    # -- workers -------------------------------------------------------------------------------------
    def get_workers(self) -> list[Any]:
        """Sync workers for ``neutron-periodic-workers`` (each runs in its own process)."""
        return [SyncWorker(index=i) for i in range(cfg.CONF.converge.sync_workers)]
