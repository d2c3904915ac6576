"""The reference controller's own attribute checks (``422 invalid_object``), and parent extraction.

A vendor's controller refuses objects for its own reasons; these checks stand in for them so the engine's
handling of a refused operation is exercised: ``subnet.cidr`` is an IP network, ``port.mac_address`` a
MAC address, ``network.mtu`` an integer within 68..max_mtu, and no ``name`` may match the injected
``reject_name_pattern``. Called by ``state.Store.apply_batch`` for each put, in batch order.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from converge.core.ids import ObjectId
from converge.core.kinds import REFERENCES, InvalidReference, Kind, parents
from converge.fabric.errors import invalid_object
from converge.fabric.operations import Put

MIN_MTU = 68
_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


@dataclass(frozen=True)
class Checks:
    """What a put is checked against: the configured MTU ceiling and the injected name pattern."""

    max_mtu: int = 9000
    reject_name: re.Pattern[str] | None = None


def check_put(put: Put, checks: Checks) -> tuple[tuple[Kind, ObjectId], ...]:
    """Refuse ``put`` with ``422 invalid_object`` if it fails a check; return its parents' keys."""
    doc = put.doc
    attrs = doc.attributes
    where = f"{doc.kind.value} {doc.id}"
    if doc.kind is Kind.SUBNET and attrs.get("cidr") is not None:
        cidr = attrs["cidr"]
        try:
            if not isinstance(cidr, str):
                raise ValueError("not a string")
            ipaddress.ip_network(cidr)
        except ValueError as exc:
            raise invalid_object(f"{where}: attribute 'cidr' {cidr!r} is not an IP network ({exc})",
                                 index=put.index) from None
    if doc.kind is Kind.PORT and attrs.get("mac_address") is not None:
        mac = attrs["mac_address"]
        if not isinstance(mac, str) or not _MAC_RE.match(mac):
            raise invalid_object(f"{where}: attribute 'mac_address' {mac!r} is not a MAC address",
                                 index=put.index)
    if doc.kind is Kind.NETWORK and attrs.get("mtu") is not None:
        mtu = attrs["mtu"]
        if isinstance(mtu, bool) or not isinstance(mtu, int) or not MIN_MTU <= mtu <= checks.max_mtu:
            raise invalid_object(
                f"{where}: attribute 'mtu' {mtu!r} must be an integer from {MIN_MTU} to {checks.max_mtu}",
                index=put.index)
    name = attrs.get("name")
    if checks.reject_name is not None and isinstance(name, str) and checks.reject_name.search(name):
        raise invalid_object(
            f"{where}: attribute 'name' {name!r} matches the injected reject_name_pattern "
            f"{checks.reject_name.pattern!r}", index=put.index)
    for ref in REFERENCES[doc.kind]:
        # core.kinds.parents iterates any list it is given; a single-valued reference must be one id.
        if not ref.many and isinstance(attrs.get(ref.attribute), list):
            raise invalid_object(f"{where}: attribute {ref.attribute!r} must be one {ref.target.value} id, "
                                 "not a list", index=put.index)
    try:
        return tuple(dict.fromkeys(parents(doc.kind, attrs)))
    except InvalidReference as exc:
        raise invalid_object(f"{where}: {exc}", index=put.index) from None
