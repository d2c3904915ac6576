"""Security groups and rules, recorded through Neutron's callback registry at PRECOMMIT time — inside
the same transaction as the Neutron change, like the ML2 hooks.

A group's precommit-create payload carries the rules Neutron created with it (the default rules of a
project's default group arrive this way); a group's precommit-delete payload names its rules, deleted
with it by cascade. The database also cascades to the rules of *other* groups that name the deleted one
as their remote group (``remote_group_id ... ON DELETE CASCADE``), with no event of their own: they are
read at the group's precommit delete and deleted from intent with it.
"""

from __future__ import annotations

from typing import Any

from neutron.db.models import securitygroup as sg_models
from neutron_lib.callbacks import events, registry, resources
from sqlalchemy import select

from converge.core.kinds import Kind
from converge.neutron import recorder, translate


def subscribe() -> None:
    """Idempotent: neutron-lib keeps one subscription per callback however often the driver initialises."""
    registry.subscribe(_group_created, resources.SECURITY_GROUP, events.PRECOMMIT_CREATE)
    registry.subscribe(_group_updated, resources.SECURITY_GROUP, events.PRECOMMIT_UPDATE)
    registry.subscribe(_group_deleted, resources.SECURITY_GROUP, events.PRECOMMIT_DELETE)
    registry.subscribe(_rule_created, resources.SECURITY_GROUP_RULE, events.PRECOMMIT_CREATE)
    registry.subscribe(_rule_deleted, resources.SECURITY_GROUP_RULE, events.PRECOMMIT_DELETE)
    registry.subscribe(_nudge, resources.SECURITY_GROUP, events.AFTER_CREATE)
    registry.subscribe(_nudge, resources.SECURITY_GROUP, events.AFTER_UPDATE)
    registry.subscribe(_nudge, resources.SECURITY_GROUP, events.AFTER_DELETE)
    registry.subscribe(_nudge, resources.SECURITY_GROUP_RULE, events.AFTER_CREATE)
    registry.subscribe(_nudge, resources.SECURITY_GROUP_RULE, events.AFTER_DELETE)


def _group_created(resource: str, event: str, trigger: Any, payload: Any) -> None:
    group = payload.latest_state
    recorder.record_in(payload.context, recorder.build(lambda: translate.security_group_changes(group, created=True)))


def _group_updated(resource: str, event: str, trigger: Any, payload: Any) -> None:
    group = payload.desired_state or payload.latest_state
    recorder.record_in(payload.context, recorder.build(lambda: translate.security_group_changes(group, created=False)))


def _group_deleted(resource: str, event: str, trigger: Any, payload: Any) -> None:
    group = payload.latest_state
    root = translate.root_of(group)
    rule_ids = (payload.metadata or {}).get("security_group_rule_ids") or [
        r["id"] for r in group.get("security_group_rules") or ()]
    changes = [translate.delete(Kind.SECURITY_GROUP_RULE, None, oid=rid, root=root) for rid in rule_ids]
    naming = select(sg_models.SecurityGroupRule.id, sg_models.SecurityGroupRule.project_id).where(
        sg_models.SecurityGroupRule.remote_group_id == group["id"],
        sg_models.SecurityGroupRule.security_group_id != group["id"])
    changes += [translate.delete(Kind.SECURITY_GROUP_RULE, None, oid=row.id,
                                 root=translate.root_of({"project_id": row.project_id}))
                for row in payload.context.session.execute(naming)]
    changes.append(translate.delete(Kind.SECURITY_GROUP, group, oid=group["id"], root=root))
    recorder.record_in(payload.context, changes)


def _rule_created(resource: str, event: str, trigger: Any, payload: Any) -> None:
    rule = payload.latest_state
    recorder.record_in(payload.context, recorder.build(
        lambda: translate.upsert(Kind.SECURITY_GROUP_RULE, rule, created=True)))


def _rule_deleted(resource: str, event: str, trigger: Any, payload: Any) -> None:
    oid = payload.resource_id
    ctx = payload.context
    root = recorder.root_of_recorded(ctx, Kind.SECURITY_GROUP_RULE, oid)
    if root is not None:
        recorder.record_in(ctx, recorder.build(
            lambda: translate.delete(Kind.SECURITY_GROUP_RULE, None, oid=oid, root=root)))


def _nudge(resource: str, event: str, trigger: Any, payload: Any) -> None:
    recorder.nudge()
