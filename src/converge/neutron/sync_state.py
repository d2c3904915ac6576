"""``converge:sync_state`` and ``converge:sync_error`` on Neutron resources, without a query per row.

The desired and status rows of each resource are mapped (read-only) onto Neutron's own models as
relationships loaded by ``joined`` eager loading: two LEFT OUTER JOINs on primary keys in the query Neutron
makes anyway — no extra round trip, for one resource or a list of N. The state is derived, never stored:

- ``error``   the controller refused exactly the desired state (message in ``converge:sync_error``);
- ``synced``  the digest the controller holds equals the desired digest;
- ``pending`` anything else: not pushed yet, blocked behind a parent, or not recorded (run ``converge adopt``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, orm

from converge.core.kinds import Kind
from converge.store.schema import ObjectState, desired, status

STATE = "converge:sync_state"
ERROR = "converge:sync_error"


class DesiredRow:
    """Read-only ORM view of ``converge_desired``."""


class StatusRow:
    """Read-only ORM view of ``converge_status``."""


_registry = orm.registry()
_registry.map_imperatively(DesiredRow, desired)
_registry.map_imperatively(StatusRow, status)


def derive(want: Any, have: Any) -> tuple[str, str | None]:
    if want is None:
        return "pending", None
    if have is not None and have.state == ObjectState.ERROR.value and have.error_digest == want.digest:
        return "error", have.message
    if have is not None and have.pushed_digest == want.digest:
        return "synced", None
    return "pending", None


def attach(model: Any, kind: Kind) -> None:
    """Give a Neutron model ``converge_desired`` / ``converge_status`` relationships (once)."""
    if "converge_desired" in model.__mapper__.relationships:
        return
    for name, target, table in (("converge_desired", DesiredRow, desired), ("converge_status", StatusRow, status)):
        # Declared many-to-one (the model's id "refers" to the row): neutron-lib gives every one-to-many
        # relationship on its models a generated backref, which cannot work for a join without foreign keys.
        join = and_(orm.foreign(model.__table__.c.id) == table.c.id, table.c.kind == kind.value)
        model.__mapper__.add_property(name, orm.relationship(target, primaryjoin=join, viewonly=True,
                                                             uselist=False, lazy="joined"))


def extend(result: dict[str, Any], db_object: Any) -> None:
    """A ``resource_extend`` function: fills the two attributes from the eagerly loaded rows."""
    want = getattr(db_object, "converge_desired", None)
    have = getattr(db_object, "converge_status", None)
    result[STATE], result[ERROR] = derive(want, have)
