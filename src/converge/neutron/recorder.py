"""Writing intent from inside Neutron's transaction, and waking the workers afterwards.

``record_in`` is called from precommit hooks and precommit callbacks: the session is Neutron's own, in
its open transaction, so the intent commits (or rolls back) with the Neutron change itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select

from converge.core.kinds import Kind
from converge.store.intent import Change, InvalidChange, record_many
from converge.store.schema import desired

log = logging.getLogger(__name__)

# A sync worker living in this process registers its nudge here (tests, `converge sync run` embedding);
# API workers have none and rely on the workers' short polling.
_nudges: list[Callable[[], None]] = []


class IntentError(Exception):
    """A Neutron resource Converge cannot represent; names the resource and the problem."""


def record_in(plugin_context: Any, changes: Iterable[Change]) -> None:
    items = list(changes)
    try:
        record_many(plugin_context.session, items)
    except InvalidChange as err:  # a bug, or data Neutron should not have let through
        raise IntentError(f"converge cannot record this change: {err}") from err


def build(factory: Callable[[], Change | list[Change]]) -> list[Change]:
    try:
        made = factory()
    except InvalidChange as err:
        raise IntentError(f"converge cannot record this change: {err}") from err
    return made if isinstance(made, list) else [made]


def root_of_recorded(plugin_context: Any, kind: Kind, oid: str) -> str | None:
    """The project an already recorded object belongs to (a delete payload may not say); None if the
    object was never recorded, so there is nothing to delete from intent."""
    row = plugin_context.session.execute(
        select(desired.c.root).where(desired.c.id == oid, desired.c.kind == kind.value)).first()
    return str(row.root) if row is not None else None


def register_nudge(nudge: Callable[[], None]) -> None:
    _nudges.append(nudge)


def nudge() -> None:
    for wake in list(_nudges):
        wake()
