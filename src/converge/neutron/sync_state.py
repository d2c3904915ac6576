"""``converge:sync_state`` and ``converge:sync_error`` on Neutron resources, without a query per row.

The desired and status rows of each resource are mapped (read-only) onto Neutron's own models as
relationships loaded by ``joined`` eager loading: two LEFT OUTER JOINs on primary keys in the query Neutron
makes anyway — no extra round trip, for one resource or a list of N. The state is derived, never stored:

- ``error``   the controller refused exactly the desired state (message in ``converge:sync_error``);
- ``synced``  the digest the controller holds equals the desired digest;
- ``pending`` anything else: not pushed yet, blocked behind a parent, or not recorded (run ``converge adopt``).

:func:`state_of` is the same derivation in SQL, for ``?converge:sync_state=error`` on a list: one correlated
subquery on the two primary keys per row of the one query Neutron makes (``ext_driver`` hooks it in).
Who may see or filter by either attribute is Neutron's policy (``converge.neutron.policies``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, orm, select

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


STATES = ("pending", "synced", "error")


def state_of(model: Any, kind: Kind) -> ColumnElement[str]:
    """:func:`derive` as SQL: the sync state of the ``model`` row of the enclosing query (of ``kind``)."""
    want, have = desired.alias("converge_sync_want"), status.alias("converge_sync_have")
    state = (select(case((and_(have.c.state == ObjectState.ERROR.value, have.c.error_digest == want.c.digest), "error"),
                         (have.c.pushed_digest == want.c.digest, "synced"), else_="pending"))
             .select_from(want.outerjoin(have, and_(have.c.id == want.c.id, have.c.kind == want.c.kind)))
             .where(want.c.id == model.__table__.c.id, want.c.kind == kind.value)
             .correlate(model.__table__).scalar_subquery())
    return func.coalesce(state, "pending")  # no desired row: not recorded yet


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
