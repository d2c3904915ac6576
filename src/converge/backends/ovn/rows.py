"""The NB rows one Converge object stands for: the values translation produces and the backend writes.

An object (a network, a port, a rule…) owns a few rows: a *primary* row that carries the object's
identity and stamps in ``external_ids`` (``converge:kind``, ``converge:id``, ``converge:root``,
``converge:digest``, ``converge:rows``), and *extra* rows (a localnet port, a gateway router port, a NAT,
a static route, a gateway chassis) that carry ``converge:owner`` = ``kind/id``. Rows of non-root tables
(ports, ACLs, NATs, routes…) must be referenced from a container column or OVSDB deletes them: each says
where (:class:`Slot`). A row may also have to be listed in containers other objects own (a port's LSP in
its security groups' port groups, in the shared ``neutron_pg_drop``): :attr:`RowSpec.also_in`.

Column values are plain data: ``str``, ``int``, ``bool``, ``list`` (an OVSDB set, sorted), ``dict`` of
``str`` (an OVSDB map). A reference to another object's row (a port's ``dhcpv4_options``) is a
:class:`RowRef`, resolved by the backend against its replica. Who calls it: ``translate.py`` builds these,
``replica.py`` and ``apply.py`` read and write them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Key of an object: (kind value, id), as the engine's ``Key``.
ObjectKey = tuple[str, str]

# The shared rows no single object owns (created on demand, changed only by mutation, never deleted).
SHARED = ("shared", "shared")
PG_DROP = "neutron_pg_drop"  # the default-drop port group of every port with port security


@dataclass(frozen=True)
class RowRef:
    """A reference to the row ``row`` of the object ``owner`` (resolved to its UUID when written)."""

    owner: ObjectKey
    row: str


@dataclass(frozen=True)
class Slot:
    """The container column that lists a row: the row ``row`` of object ``owner`` (SHARED for the shared
    rows, whose ``row`` is then their name), column ``column`` (``ports``, ``acls``, ``nat``…)."""

    owner: ObjectKey
    row: str
    column: str


@dataclass(frozen=True)
class RowSpec:
    """One NB row an object owns. ``key`` names it among the object's rows ("ls", "lsp", "localnet",
    "pg", "acl", "lr", "lrp", "gw", "route", "snat:10.0.0.0/24"…); the first row of an object is its primary row.
    ``parent`` is the container that must reference it (required for non-root tables); ``also_in`` lists
    more containers that must list it (memberships owned by the row's object, not the container's)."""

    table: str
    key: str
    columns: Mapping[str, Any]
    parent: Slot | None = None
    also_in: tuple[Slot, ...] = ()


@dataclass(frozen=True)
class ObjectRows:
    """Every row of one object, primary first."""

    key: ObjectKey
    rows: tuple[RowSpec, ...] = field(default_factory=tuple)

    @property
    def primary(self) -> RowSpec:
        return self.rows[0]
