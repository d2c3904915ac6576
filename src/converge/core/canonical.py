"""Canonical JSON, object digests, bucket assignment and root fingerprints: the protocol's one definition.

Both sides compute the same numbers from the same bytes: the controller to serve ETags and bucket sums,
the engine to know the ETag it expects after a batch. Change nothing here without changing the protocol
document (docs/protocol.md) and its worked example, which a test runs.

- canonical JSON: keys sorted, no insignificant whitespace, UTF-8, no floats, integers within ±2**53;
- digest(object) = SHA-256 of the canonical JSON of ``{"attributes", "id", "kind", "revision"}``, read as
  a big-endian 256-bit integer;
- fingerprint(root) = sum of its objects' digests modulo 2**256 (order-independent, O(1) to update);
- bucket(kind, id) = first byte of SHA-256(``kind + "/" + id``): 256 buckets, named ``00``..``ff``; a bucket
  group is the first hex digit of a bucket's name (16 groups).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from converge.core.ids import ObjectId
from converge.core.kinds import Kind

MODULUS = 1 << 256
BUCKETS = 256
MAX_INT = 1 << 53


class NotCanonical(ValueError):
    """A value that has no canonical JSON form (a float, NaN, a huge integer, a non-string key)."""


def _check(value: Any, path: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not -MAX_INT <= value <= MAX_INT:
            raise NotCanonical(f"{path}: integer {value} is outside ±2**53")
        return
    if isinstance(value, float):
        raise NotCanonical(f"{path}: floats are not allowed (send {value!r} as a string)")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"{path}: key {key!r} is not a string")
            _check(item, f"{path}.{key}")
        return
    raise NotCanonical(f"{path}: {type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of ``value``; raises :class:`NotCanonical` for values without one."""
    _check(value, "$")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class ObjectDoc:
    """One object as the protocol carries it; ``revision`` is the Neutron revision it came from."""

    kind: Kind
    id: ObjectId
    attributes: Mapping[str, Any]
    revision: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "id": self.id, "attributes": dict(self.attributes),
                "revision": self.revision}

    def canonical(self) -> bytes:
        return canonical_json(self.to_json())

    def digest(self) -> int:
        return digest_bytes(self.canonical())


def digest_bytes(canonical: bytes) -> int:
    return int.from_bytes(hashlib.sha256(canonical).digest(), "big")


def bucket_of(k: Kind | str, oid: str) -> int:
    return hashlib.sha256(f"{k}/{oid}".encode()).digest()[0]


def bucket_name(bucket: int) -> str:
    return f"{bucket:02x}"


def combine(digests: Iterable[int]) -> int:
    return sum(digests) % MODULUS


def add(fingerprint: int, digest: int) -> int:
    return (fingerprint + digest) % MODULUS


def remove(fingerprint: int, digest: int) -> int:
    return (fingerprint - digest) % MODULUS


def hex256(value: int) -> str:
    return f"{value:064x}"


def etag(fingerprint: int) -> str:
    """The HTTP ETag form: a quoted strong validator of 64 lowercase hex digits."""
    return f'"{hex256(fingerprint)}"'


class BadETag(ValueError):
    """A header value that is not a quoted 64-hex-digit fingerprint."""


def parse_etag(value: str) -> int:
    text = value.strip()
    if text.startswith("W/"):
        raise BadETag(f"weak ETag {value!r} cannot guard a write")
    if len(text) == 66 and text[0] == '"' and text[-1] == '"':
        text = text[1:-1]
    if len(text) != 64:
        raise BadETag(f"bad ETag {value!r}: expected 64 hex digits in quotes")
    try:
        return int(text, 16)
    except ValueError:
        raise BadETag(f"bad ETag {value!r}: expected 64 hex digits in quotes") from None


def parse_hex256(value: str) -> int:
    return parse_etag(value)


def group_sums(bucket_sums: Mapping[int, int]) -> dict[str, int]:
    """Fold 256 bucket sums into the 16 group sums, keyed by hex digit; empty groups are left out."""
    groups: dict[str, int] = {}
    for bucket, value in bucket_sums.items():
        g = f"{bucket >> 4:x}"
        groups[g] = add(groups.get(g, 0), value)
    return {g: v for g, v in groups.items() if v}
