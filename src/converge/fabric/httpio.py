"""The HTTP edge's shared pieces: settings, request bodies, query parameters and JSON answers.

Why one place: the protocol's handlers (``api.py``), the admin handlers (``faults.py``) and the
middlewares (``app.py``) must refuse bad input the same way, with the documented ``{"error", "message"}``
body, and must read bodies under the same size limit. Nothing here knows about the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from converge.core.ids import InvalidId, RootId, root_id
from converge.fabric.errors import ErrorCode, FabricError, bad_json
from converge.fabric.operations import decode_json

MIB = 1 << 20
MAX_PAGE = 1000
DEFAULT_PAGE = 500


@dataclass(frozen=True)
class Settings:
    """What ``serve.py`` configured; see its ``--help`` for each option's meaning."""

    token: str
    admin_token: str | None = None
    faults: bool = False
    port_up_delay: float = 0.5
    max_body: int = 16 * MIB
    max_operations: int = 10_000
    max_mtu: int = 9000
    keepalive: float = 15.0

    def __repr__(self) -> str:
        # Settings end up in tracebacks and debug logs; the tokens must not.
        return (f"Settings(faults={self.faults}, port_up_delay={self.port_up_delay}, "
                f"max_body={self.max_body}, max_operations={self.max_operations}, max_mtu={self.max_mtu})")


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def error_response(exc: FabricError) -> web.Response:
    headers = {}
    if exc.code in (ErrorCode.PRECONDITION_FAILED, ErrorCode.FENCED) and "etag" in exc.extra:
        headers["ETag"] = exc.extra["etag"]
    if exc.code is ErrorCode.UNAUTHORIZED:
        headers["WWW-Authenticate"] = "Bearer"
    return json_response(exc.to_json(), status=exc.status, headers=headers)


def too_large(limit: int) -> FabricError:
    return FabricError(ErrorCode.TOO_LARGE, f"the request body is over the limit of {limit} bytes",
                       extra={"limit": limit})


async def read_body(request: web.Request) -> bytes:
    """The whole body, or ``413 too_large`` (checked on Content-Length first, so nothing is read)."""
    limit = request.client_max_size
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit) from None


async def read_json(request: web.Request) -> Any:
    return decode_json(await read_body(request))


def path_root(request: web.Request) -> RootId:
    try:
        return root_id(request.match_info["root"])
    except InvalidId as exc:
        raise FabricError(ErrorCode.INVALID_ID, f"path: {exc}") from None


def limit_param(request: web.Request) -> int:
    """``limit``: a positive integer, default 500; values over 1000 are served as 1000."""
    return min(int_param(request, "limit", DEFAULT_PAGE, minimum=1), MAX_PAGE)


def int_param(request: web.Request, name: str, default: int, *, minimum: int = 0) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad_json(f"query parameter {name!r} must be an integer, not {text!r}") from None
    if value < minimum:
        raise bad_json(f"query parameter {name!r} must be at least {minimum}, not {value}")
    return value


def flag_param(request: web.Request, name: str) -> bool:
    text = request.query.get(name, "0").lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no", ""):
        return False
    raise bad_json(f"query parameter {name!r} must be 1 or 0, not {text!r}")


def expect_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_json(f"{what} must be a JSON object")
    return value
