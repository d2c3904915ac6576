"""Planning a root's push: pure logic from (journal keys, desired rows, status rows) to ordered operations.

Coalescing falls out of the data model: the journal only says *which* objects changed; the plan compares
each one's latest desired digest with the digest the controller holds (``pushed``). So several updates
become one put, create-then-delete becomes nothing, and an update back to what the controller already has
becomes nothing.

Dependencies: a put waits (``blocked``) while one of its parents is in error, blocked, missing, or not on
the controller and not in this plan. Puts go parents first, deletes children first (``kinds.RANK``);
puts precede deletes so a reference is always added before the object it leaves is removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from converge.backends.base import Delete, Operation, Put
from converge.core import canonical
from converge.core.ids import ObjectId
from converge.core.kinds import RANK, Kind
from converge.store.schema import ObjectState
from converge.store.sync import DesiredRow, Key, StatusRow

# error_digest of a refused delete: no desired digest exists for it.
REFUSED_DELETE = 0


@dataclass
class Plan:
    operations: list[Operation] = field(default_factory=list)
    expected: int = 0  # the root's fingerprint after every operation applied
    after: dict[Key, int | None] = field(default_factory=dict)  # digest on the controller after success
    settled: dict[Key, int] = field(default_factory=dict)  # already right on the controller
    removed: set[Key] = field(default_factory=set)  # absent on both sides
    blocked: dict[Key, tuple[int | None, str]] = field(default_factory=dict)  # pushed, reason
    held: set[Key] = field(default_factory=set)  # errors waiting for a change or a retry


def _label(key: Key) -> str:
    return f"{key[0]} {key[1]}"


def make_plan(*, keys: Iterable[Key], desired: Mapping[Key, DesiredRow], status: Mapping[Key, StatusRow],
              acked: int, refused: Mapping[Key, int] | None = None,
              deferred: Mapping[Key, str] | None = None) -> Plan:
    """Plan the push of ``keys``. ``desired``/``status`` must also hold the rows of the keys' parents.

    ``refused`` maps keys the controller just refused to the digest it refused (REFUSED_DELETE for a
    delete): they are held like errors, and their dependents are blocked. ``deferred`` maps deletes that
    must wait (children elsewhere still on the controller, on their way out) to the reason: blocked.
    """
    refused = refused or {}
    deferred = deferred or {}
    plan = Plan(expected=acked)
    puts: dict[Key, DesiredRow] = {}
    deletes: dict[Key, int] = {}
    for key in dict.fromkeys(keys):
        d, s = desired.get(key), status.get(key)
        pushed = s.pushed if s else None
        if d is None:
            if key in refused or (s is not None and s.state is ObjectState.ERROR
                                  and s.error_digest == REFUSED_DELETE):
                plan.held.add(key)
            elif pushed is None:
                plan.removed.add(key)
            elif key in deferred:
                plan.blocked[key] = (pushed, deferred[key])
            else:
                deletes[key] = pushed
        elif d.digest == pushed:
            plan.settled[key] = d.digest
        elif refused.get(key) == d.digest or (s is not None and s.state is ObjectState.ERROR
                                              and s.error_digest == d.digest):
            plan.held.add(key)
        else:
            puts[key] = d

    _block_waiting(plan, puts, deletes, desired, status)
    fp = acked
    for key, d in sorted(puts.items(), key=lambda kv: (RANK[Kind(kv[0][0])], kv[0])):
        pushed = status[key].pushed if key in status else None
        fp = canonical.add(canonical.remove(fp, pushed) if pushed is not None else fp, d.digest)
        plan.operations.append(Put(d.doc))
        plan.after[key] = d.digest
    for key, pushed in sorted(deletes.items(), key=lambda kv: (-RANK[Kind(kv[0][0])], kv[0])):
        fp = canonical.remove(fp, pushed)
        plan.operations.append(Delete(Kind(key[0]), ObjectId(key[1])))
        plan.after[key] = None
    plan.expected = fp
    return plan


def parent_keys(rows: Iterable[DesiredRow]) -> set[Key]:
    out: set[Key] = set()
    for d in rows:
        out.update(d.parents)
    return out


def _block_waiting(plan: Plan, puts: dict[Key, DesiredRow], deletes: Mapping[Key, int],
                   desired: Mapping[Key, DesiredRow], status: Mapping[Key, StatusRow]) -> None:
    """Move puts whose parents cannot be relied on into ``plan.blocked``, to a fixpoint."""
    needs = {key: d.parents for key, d in puts.items()}
    changed = True
    while changed:
        changed = False
        for key in list(puts):
            reason = next((r for p in needs[key] if (r := _why_wait(p, plan, puts, deletes, desired, status))),
                          None)
            if reason:
                del puts[key]
                s = status.get(key)
                plan.blocked[key] = (s.pushed if s else None, reason)
                changed = True


def _why_wait(parent: Key, plan: Plan, puts: Mapping[Key, DesiredRow], deletes: Mapping[Key, int],
              desired: Mapping[Key, DesiredRow], status: Mapping[Key, StatusRow]) -> str | None:
    if parent in puts:
        return None
    if parent in plan.blocked:
        return f"waiting for {_label(parent)}, which is blocked"
    if parent in plan.held:
        return f"waiting for {_label(parent)}, which the controller refused"
    s = status.get(parent)
    if parent in deletes or parent not in desired:
        return f"waiting for {_label(parent)}, which does not exist"
    if s is not None and s.state is ObjectState.ERROR and s.error_digest == desired[parent].digest:
        return f"waiting for {_label(parent)}, which the controller refused: {s.message}"
    if s is None or s.pushed is None:
        return f"waiting for {_label(parent)} to be synced"
    return None
