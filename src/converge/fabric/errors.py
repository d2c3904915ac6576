"""The controller's error codes and the one exception that carries them to the HTTP edge.

Every refusal the protocol documents (docs/protocol.md, "Conventions") is a :class:`FabricError` with its
code, HTTP status, the failing operation's index and the extra fields the table lists. The store and the
parsers raise it without knowing about HTTP; ``app.py`` turns it into the JSON answer.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from converge.core import tls


class ErrorCode(enum.StrEnum):
    BAD_JSON = "bad_json"
    INVALID_ID = "invalid_id"
    UNKNOWN_KIND = "unknown_kind"
    UNAUTHORIZED = "unauthorized"
    CLIENT_CERTIFICATE_REQUIRED = tls.CLIENT_CERTIFICATE_REQUIRED  # the client recognises it by this code
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    MISSING_PARENT = "missing_parent"
    HAS_CHILDREN = "has_children"
    ROOT_CONFLICT = "root_conflict"
    PRECONDITION_FAILED = "precondition_failed"
    FENCED = "fenced"
    TOO_LARGE = "too_large"
    TOO_MANY_OPERATIONS = "too_many_operations"
    INVALID_OBJECT = "invalid_object"
    PRECONDITION_REQUIRED = "precondition_required"
    INJECTED_FAULT = "injected_fault"
    INTERNAL = "internal"


STATUS: Mapping[ErrorCode, int] = {
    ErrorCode.BAD_JSON: 400,
    ErrorCode.INVALID_ID: 400,
    ErrorCode.UNKNOWN_KIND: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.CLIENT_CERTIFICATE_REQUIRED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.MISSING_PARENT: 409,
    ErrorCode.HAS_CHILDREN: 409,
    ErrorCode.ROOT_CONFLICT: 409,
    ErrorCode.PRECONDITION_FAILED: 412,
    ErrorCode.FENCED: 412,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.TOO_MANY_OPERATIONS: 413,
    ErrorCode.INVALID_OBJECT: 422,
    ErrorCode.PRECONDITION_REQUIRED: 428,
    ErrorCode.INJECTED_FAULT: 503,
    ErrorCode.INTERNAL: 500,
}


class FabricError(Exception):
    """A documented refusal: ``code``, HTTP ``status``, the batch ``index`` if any, and ``extra`` fields."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        index: int | None = None,
        status: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.index = index
        self.status = STATUS[code] if status is None else status
        self.extra: dict[str, Any] = dict(extra or {})

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code.value, "message": self.message}
        if self.index is not None:
            body["index"] = self.index
        body.update(self.extra)
        return body


def bad_json(message: str, *, index: int | None = None) -> FabricError:
    return FabricError(ErrorCode.BAD_JSON, message, index=index)


def invalid_object(message: str, *, index: int) -> FabricError:
    return FabricError(ErrorCode.INVALID_OBJECT, message, index=index)


def not_found(message: str) -> FabricError:
    return FabricError(ErrorCode.NOT_FOUND, message)
