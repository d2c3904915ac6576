"""Identifier types and the validation every layer applies to them.

Roots are Neutron projects; object ids are Neutron UUIDs (any string of safe characters is accepted so a
vendor can use its own ids). Validation lives here so the controller, the store and the CLI reject the
same bad input with the same message.
"""

from __future__ import annotations

import re
from typing import NewType

RootId = NewType("RootId", str)
ObjectId = NewType("ObjectId", str)
WorkerId = NewType("WorkerId", str)

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class InvalidId(ValueError):
    """An id that is empty, too long, or carries characters outside ``[A-Za-z0-9_.:-]``."""


def _check(what: str, value: object) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise InvalidId(f"invalid {what} {value!r}: expected 1-128 characters of [A-Za-z0-9_.:-]")
    return value


def root_id(value: object) -> RootId:
    return RootId(_check("root id", value))


def object_id(value: object) -> ObjectId:
    return ObjectId(_check("object id", value))
