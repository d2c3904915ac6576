"""Batch bodies into operation values: the shape checks of ``POST /v1/roots/{root}/batch``.

A batch is parsed completely before anything is looked up, so every ``400`` (bad JSON, wrong shape,
unknown kind, invalid id, a float in the attributes) is answered without touching the store. Each put
arrives here with its canonical bytes, digest and bucket already computed, once. Called by ``app.py``; the
values are applied by ``state.Store.apply_batch``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from converge.core.canonical import MAX_INT, NotCanonical, ObjectDoc, bucket_of, digest_bytes
from converge.core.ids import InvalidId, ObjectId, object_id
from converge.core.kinds import Kind, UnknownKind, kind
from converge.fabric.errors import ErrorCode, FabricError, bad_json

Key = tuple[Kind, ObjectId]

_OBJECT_FIELDS = frozenset({"kind", "id", "attributes", "revision"})
_PUT_FIELDS = frozenset({"op", "object"})
_DELETE_FIELDS = frozenset({"op", "kind", "id"})


@dataclass(frozen=True, slots=True)
class Put:
    """Create or replace ``doc``; ``canonical``, ``digest`` and ``bucket`` are derived from it."""

    index: int
    doc: ObjectDoc
    canonical: bytes
    digest: int
    bucket: int

    @property
    def key(self) -> Key:
        return (self.doc.kind, self.doc.id)


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove the object if it is present in the batch's root."""

    index: int
    kind: Kind
    id: ObjectId

    @property
    def key(self) -> Key:
        return (self.kind, self.id)


Operation = Put | Delete


def decode_json(body: bytes) -> Any:
    """The body as JSON, or ``400 bad_json``; deep nesting and huge integers are bad JSON, not crashes."""
    if not body.strip():
        raise bad_json("the body is empty: expected a JSON object")
    try:
        return json.loads(body)
    except RecursionError:
        raise bad_json("the body nests too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise bad_json(f"the body is not JSON: {exc}") from None


def count_operations(value: Any) -> int:
    """How many operations a body claims to carry, for the audit log of refused batches."""
    if isinstance(value, dict) and isinstance(value.get("operations"), list):
        return len(value["operations"])
    return 0


def parse_key(kind_text: object, id_text: object, *, where: str, index: int | None = None) -> Key:
    """``(kind, id)`` or ``400 unknown_kind`` / ``400 invalid_id`` naming ``where``."""
    try:
        k = kind(kind_text)
    except UnknownKind as exc:
        raise FabricError(ErrorCode.UNKNOWN_KIND, f"{where}.kind: {exc}", index=index) from None
    try:
        return k, object_id(id_text)
    except InvalidId as exc:
        raise FabricError(ErrorCode.INVALID_ID, f"{where}.id: {exc}", index=index) from None


def parse_batch(value: Any, *, max_operations: int) -> list[Operation]:
    """Every operation of a decoded batch body, in order; raises the first shape error found."""
    if not isinstance(value, dict):
        raise bad_json("the body must be a JSON object with an 'operations' list")
    extra = set(value) - {"operations"}
    if extra:
        raise bad_json(f"unknown field(s) {sorted(extra)} in the batch body")
    raw = value.get("operations")
    if not isinstance(raw, list):
        raise bad_json("'operations' must be a list")
    if len(raw) > max_operations:
        raise FabricError(
            ErrorCode.TOO_MANY_OPERATIONS,
            f"the batch has {len(raw)} operations; the limit is {max_operations}",
            extra={"limit": max_operations},
        )
    return [_parse_operation(i, item) for i, item in enumerate(raw)]


def _parse_operation(index: int, item: Any) -> Operation:
    where = f"operations[{index}]"
    if not isinstance(item, dict):
        raise bad_json(f"{where} must be an object", index=index)
    op = item.get("op")
    if op == "put":
        _no_extra_fields(item, _PUT_FIELDS, where, index)
        return _parse_put(index, item.get("object"), f"{where}.object")
    if op == "delete":
        _no_extra_fields(item, _DELETE_FIELDS, where, index)
        k, oid = parse_key(item.get("kind"), item.get("id"), where=where, index=index)
        return Delete(index, k, oid)
    raise bad_json(f"{where}.op must be 'put' or 'delete', not {op!r}", index=index)


def _parse_put(index: int, obj: Any, where: str) -> Put:
    if not isinstance(obj, dict):
        raise bad_json(f"{where} must be an object", index=index)
    # Unknown fields are refused rather than dropped: the writer hashes what it sends, and a silently
    # dropped field would make its expected ETag differ from ours with no error to explain why.
    _no_extra_fields(obj, _OBJECT_FIELDS, where, index)
    missing = sorted(_OBJECT_FIELDS - set(obj))
    if missing:
        raise bad_json(f"{where}.{missing[0]} is required", index=index)
    k, oid = parse_key(obj["kind"], obj["id"], where=where, index=index)
    attributes = obj["attributes"]
    if not isinstance(attributes, dict):
        raise bad_json(f"{where}.attributes must be an object", index=index)
    revision = obj["revision"]
    if isinstance(revision, bool) or not isinstance(revision, int) or not 0 <= revision <= MAX_INT:
        raise bad_json(f"{where}.revision must be an integer from 0 to 2**53", index=index)
    doc = ObjectDoc(kind=k, id=oid, attributes=attributes, revision=revision)
    try:
        canonical = doc.canonical()
    except NotCanonical as exc:
        raise bad_json(f"{where}: {exc}", index=index) from None
    except RecursionError:
        raise bad_json(f"{where}.attributes nest too deeply", index=index) from None
    return Put(index, doc, canonical, digest_bytes(canonical), bucket_of(k, oid))


def _no_extra_fields(item: dict[str, Any], allowed: frozenset[str], where: str, index: int) -> None:
    extra = set(item) - allowed
    if extra:
        raise bad_json(f"unknown field(s) {sorted(extra)} in {where}", index=index)
