"""Default policies of the ``converge-sync`` attributes, registered the way Neutron registers its own.

Neutron loads the rules every ``neutron.policies`` entry point returns into its enforcer, and
``oslopolicy-sample-generator --namespace converge`` finds the same list through ``oslo.policy.policies``
(``etc/policy.yaml.sample``). Neutron then enforces them itself: an attribute a caller may not read
(``get_port:converge:sync_state``…) is stripped from every answer, a create's included. The list filter
``?converge:sync_state=`` checks the same rule (``ext_driver``), so nobody learns by filtering what they
may not read.

Both attributes are admin-only by default. ``converge:sync_error`` carries the controller's refusal
text, which may name other projects' objects or the fabric's internals. ``converge:sync_state`` changes
without a revision bump (``pending`` in a create's answer, ``synced`` a moment later), which breaks the
create-versus-show comparisons of API clients and of Tempest's member tests (``test_show_port``). An
operator opens it by overriding the one rule ``converge_sync_state`` (docs/operations.md, Security).
"""

from __future__ import annotations

from neutron_lib.policy import rules
from oslo_policy import policy

from converge.neutron.sync_state import ERROR, STATE

STATE_RULE = "converge_sync_state"
ERROR_RULE = "converge_sync_error"
# Neutron's resource (singular, as in get_<resource>) and collection for each resource carrying the attributes.
RESOURCES = {"network": "networks", "subnet": "subnets", "port": "ports", "router": "routers",
             "floatingip": "floatingips", "security_group": "security_groups"}
COLLECTION_RESOURCE = {collection: resource for resource, collection in RESOURCES.items()}
_NAMES = {"floatingip": "floating IP", "security_group": "security group"}


def attribute_rule(collection: str, attribute: str) -> str:
    """The rule Neutron checks before showing ``attribute`` of a resource of ``collection``."""
    return f"get_{COLLECTION_RESOURCE[collection]}:{attribute}"


def _attribute_defaults(attribute: str, base: str, what: str) -> list[policy.DocumentedRuleDefault]:
    return [policy.DocumentedRuleDefault(
        name=attribute_rule(collection, attribute), check_str=f"rule:{base}", scope_types=["project"],
        description=f"Get the ``{attribute}`` attribute of a {_NAMES.get(resource, resource)} ({what})",
        operations=[{"method": "GET", "path": f"/{collection}"},
                    {"method": "GET", "path": f"/{collection}/{{id}}"}])
        for resource, collection in RESOURCES.items()]


RULES = [
    policy.RuleDefault(
        STATE_RULE, rules.ADMIN,
        description="Who may read converge:sync_state (pending, synced, error) of any resource, and filter "
                    "lists by it. Opening it to project readers (e.g. 'rule:admin_only or role:reader and "
                    "project_id:%(project_id)s') shows them a state that changes without a revision bump: a "
                    "create's answer says pending where a later show says synced."),
    policy.RuleDefault(
        ERROR_RULE, rules.ADMIN,
        description="Who may read converge:sync_error: the controller's refusal text, which may name "
                    "infrastructure and other projects' objects."),
    *_attribute_defaults(STATE, STATE_RULE, "whether the SDN controller matches it"),
    *_attribute_defaults(ERROR, ERROR_RULE, "why the SDN controller refused it"),
]


def list_rules() -> list[policy.RuleDefault]:
    """Entry point of ``neutron.policies`` and ``oslo.policy.policies`` (``converge``)."""
    return list(RULES)
