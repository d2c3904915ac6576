"""The ML2 extension driver ``converge`` (entry point ``neutron.ml2.extension_drivers``): declares the
``converge-sync`` API extension, wires the sync-state attributes onto Neutron's models, and hooks the
``converge:sync_state`` list filter into Neutron's model queries.

The filter is a model-query *result filter*: Neutron hands it the collection query and the API's filters,
and it adds one ``WHERE <state of the row> IN (…)`` (``sync_state.state_of``), so a filtered list is still
the one query Neutron makes. A result filter gets no request context, so the model's *query hook* (which
does) leaves it on the query for the filter to check Neutron's policy with: a caller who may not read the
attribute gets 403 rather than a list that gives the state away.

Enable it with ``[ml2] extension_drivers = …,converge``.
"""

from __future__ import annotations

import logging
from typing import Any

from neutron import policy
from neutron.api import extensions as neutron_extensions
from neutron_lib import exceptions
from neutron_lib.db import model_query, resource_extend
from neutron_lib.plugins.ml2 import api

from converge.core.kinds import Kind
from converge.neutron import extensions, policies, sync_state
from converge.neutron.extensions.converge_sync import ALIAS

log = logging.getLogger(__name__)

HOOK = "converge_sync_state"
_CONTEXT = "converge_request_context"  # the query's execution option carrying the caller's context


class StateFilter:
    """``?converge:sync_state=…`` on one model's lists (its methods are the model's query hooks)."""

    def __init__(self, model: Any, kind: Kind, collection: str) -> None:
        self.model, self.kind, self.collection = model, kind, collection
        self.rule = policies.attribute_rule(collection, sync_state.STATE)

    def carry_context(self, context: Any, model: Any, query: Any) -> Any:
        return query.execution_options(**{_CONTEXT: context})

    def result_filter(self, query: Any, filters: dict[str, Any]) -> Any:
        wanted = filters.get(sync_state.STATE)
        if wanted is None:
            return query
        context = query.get_execution_options().get(_CONTEXT)
        if context is None:  # not a query Neutron built with its hooks: no caller to check it for
            raise exceptions.NotAuthorized()
        policy.enforce(context, self.rule, {"project_id": context.project_id}, pluralized=self.collection)
        return query.filter(sync_state.state_of(self.model, self.kind).in_([str(v) for v in wanted]))


_FILTERS: dict[Any, StateFilter] = {}  # Neutron keeps weak references to hooks: these keep them alive


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
        if model not in _FILTERS:
            hooks = _FILTERS[model] = StateFilter(model, kind, collection)
            model_query.register_hook(model, HOOK, query_hook=hooks.carry_context, filter_hook=None,
                                      result_filters=hooks.result_filter)


class ConvergeExtensionDriver(api.ExtensionDriver):  # type: ignore[misc]
    _supported_extension_alias = ALIAS

    def initialize(self) -> None:
        neutron_extensions.append_api_extensions_path(list(extensions.__path__))
        wire()
        log.info("converge extension driver ready (%s)", ALIAS)

    @property
    def extension_alias(self) -> str:
        return ALIAS
