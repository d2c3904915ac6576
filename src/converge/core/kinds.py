"""The object kinds the protocol knows, and the references each kind makes to its parents.

References decide two things: the controller's referential integrity (a child needs its parents, a
parent with children cannot go) and the engine's ordering (parents first on create, children first on
delete). They are declared once here and read by both sides.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from converge.core.ids import InvalidId, ObjectId, object_id


class Kind(enum.StrEnum):
    NETWORK = "network"
    SUBNET = "subnet"
    PORT = "port"
    ROUTER = "router"
    ROUTER_INTERFACE = "router_interface"
    FLOATING_IP = "floating_ip"
    SECURITY_GROUP = "security_group"
    SECURITY_GROUP_RULE = "security_group_rule"


class UnknownKind(ValueError):
    """A kind name that is not one of :class:`Kind`."""


def kind(value: object) -> Kind:
    if isinstance(value, str) and value in _BY_VALUE:
        return _BY_VALUE[value]
    names = ", ".join(k.value for k in Kind)
    raise UnknownKind(f"unknown kind {value!r}: expected one of {names}")


_BY_VALUE = {k.value: k for k in Kind}


@dataclass(frozen=True)
class Reference:
    """An attribute of a child that names a parent: ``attribute`` holds the parent's id (or a list)."""

    attribute: str
    target: Kind
    required: bool = False
    many: bool = False


REFERENCES: Mapping[Kind, tuple[Reference, ...]] = {
    Kind.NETWORK: (),
    Kind.SUBNET: (Reference("network_id", Kind.NETWORK, required=True),),
    Kind.PORT: (
        Reference("network_id", Kind.NETWORK, required=True),
        Reference("security_groups", Kind.SECURITY_GROUP, many=True),
    ),
    Kind.ROUTER: (Reference("external_network_id", Kind.NETWORK),),
    Kind.ROUTER_INTERFACE: (
        Reference("router_id", Kind.ROUTER, required=True),
        Reference("subnet_id", Kind.SUBNET, required=True),
        Reference("subnet_ids", Kind.SUBNET, many=True),
        Reference("port_id", Kind.PORT),
    ),
    Kind.FLOATING_IP: (
        Reference("floating_network_id", Kind.NETWORK, required=True),
        Reference("port_id", Kind.PORT),
        Reference("router_id", Kind.ROUTER),
    ),
    Kind.SECURITY_GROUP: (),
    Kind.SECURITY_GROUP_RULE: (
        Reference("security_group_id", Kind.SECURITY_GROUP, required=True),
        Reference("remote_group_id", Kind.SECURITY_GROUP),
    ),
}

# Depth of each kind in the reference graph: parents have a smaller rank. Used as the tie-breaking
# order of a batch so that a batch is always valid when sorted by (rank, ...) for puts.
RANK: Mapping[Kind, int] = {
    Kind.NETWORK: 0,
    Kind.SECURITY_GROUP: 0,
    Kind.SUBNET: 1,
    Kind.ROUTER: 1,
    Kind.SECURITY_GROUP_RULE: 1,
    Kind.PORT: 2,
    Kind.ROUTER_INTERFACE: 3,
    Kind.FLOATING_IP: 3,
}


class InvalidReference(ValueError):
    """A reference attribute that is missing, or does not hold an id (or a list of ids)."""


def parents(k: Kind, attributes: Mapping[str, object]) -> Iterator[tuple[Kind, ObjectId]]:
    """Yield ``(kind, id)`` of every parent the object names; raise :class:`InvalidReference` if malformed."""
    for ref in REFERENCES[k]:
        value = attributes.get(ref.attribute)
        if value is None:
            if ref.required:
                raise InvalidReference(f"{k.value} needs attribute {ref.attribute!r} ({ref.target.value} id)")
            continue
        if ref.many != isinstance(value, list):
            shape = "a list of" if ref.many else "one"
            raise InvalidReference(f"{k.value}.{ref.attribute} must be {shape} {ref.target.value} id(s)")
        for v in value if isinstance(value, list) else [value]:
            try:
                yield ref.target, object_id(v)
            except InvalidId as exc:
                raise InvalidReference(f"{k.value}.{ref.attribute}: {exc}") from None
