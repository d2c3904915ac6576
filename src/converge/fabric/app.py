"""The aiohttp application: routes, and the middlewares every request passes through.

Why middlewares: authentication, fault injection and error answers must apply to every endpoint
identically, so no handler can forget one. From the outside in:

1. errors: a :class:`FabricError` or aiohttp's own 404/405/413 becomes the documented JSON error; any
   other exception is logged and answered ``500 {"error": "internal"}`` (a bug, never bad input);
2. auth: ``/v1/admin/*`` needs the admin token and exists only with ``--faults`` (404 otherwise); every
   other ``/v1`` path and ``/metrics`` needs the normal token; ``/healthz`` needs none. Tokens are
   compared in constant time and never logged (the access log format has no headers);
3. faults (only with ``--faults``): hang, latency and injected errors for ``/v1`` calls but the admin API.

Called by ``serve.py``, which owns the listening socket and the process lifecycle.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware

from converge.fabric.api import Api
from converge.fabric.errors import ErrorCode, FabricError, not_found
from converge.fabric.events import Broadcaster
from converge.fabric.faults import Admin, Faults, Listener
from converge.fabric.httpio import Settings, error_response, json_response, too_large
from converge.fabric.metrics import Metrics
from converge.fabric.ports import PortUpTimer
from converge.fabric.state import Store

log = logging.getLogger(__name__)

# Remote address, request line, status, size, seconds: deliberately no header, so no token can leak.
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tf'


class WithholdRequestBytes(logging.Filter):
    """For aiohttp's ``aiohttp.server`` logger: a request that fails to parse is logged without its bytes.

    aiohttp's parser errors quote the offending line, which can be an ``Authorization`` header; the log
    keeps the error's type and drops the quote and traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = f"{record.getMessage()}: {type(exc).__name__} (request bytes withheld from the log)"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def _is_admin(path: str) -> bool:
    return path == "/v1/admin" or path.startswith("/v1/admin/")


def _is_protected(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/") or path == "/metrics"


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except FabricError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        return _from_aiohttp(request, exc)
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return json_response({"error": ErrorCode.INTERNAL.value,
                              "message": "internal error; the controller's log has the details"},
                             status=500)


def _from_aiohttp(request: web.Request, exc: web.HTTPException) -> web.StreamResponse:
    if exc.status == 404:
        return error_response(not_found(f"no endpoint {request.method} {request.path}"))
    if exc.status == 405:
        response = error_response(FabricError(ErrorCode.METHOD_NOT_ALLOWED,
                                              f"{request.method} is not allowed on {request.path}"))
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    if exc.status == 413:
        return error_response(too_large(request.client_max_size))
    if exc.status < 400:
        raise exc
    code = exc.reason.lower().replace(" ", "_")
    return json_response({"error": code, "message": exc.reason}, status=exc.status)


def _authenticate(request: web.Request, token: str, what: str) -> None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    given = credentials.strip().encode("utf-8", "replace")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given, token.encode()):
        raise FabricError(ErrorCode.UNAUTHORIZED, f"missing or wrong bearer token ({what} token required)")


def _auth(settings: Settings) -> Middleware:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if _is_admin(path):
            if not settings.faults or settings.admin_token is None:
                raise not_found(f"no endpoint {request.method} {path} (fault injection is off)")
            _authenticate(request, settings.admin_token, "admin")
        elif _is_protected(path):
            _authenticate(request, settings.token, "API")
        return await handler(request)

    return auth


def _inject(faults: Faults) -> Middleware:
    @web.middleware
    async def inject(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/v1/") and not _is_admin(request.path):
            await faults.before()
        return await handler(request)

    return inject


async def _healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


def create_app(settings: Settings, store: Store, *, listener: Listener | None = None) -> web.Application:
    """The controller's application over an open ``store``; ``listener`` is needed with ``--faults``."""
    broadcaster = Broadcaster(keepalive=settings.keepalive)
    ports = PortUpTimer(store, broadcaster, delay=settings.port_up_delay)
    faults = Faults(max_mtu=settings.max_mtu)
    metrics = Metrics(objects=lambda: len(store.index.objects))
    api = Api(store=store, settings=settings, faults=faults, ports=ports, metrics=metrics)

    middlewares: list[Middleware] = [_errors, _auth(settings)]
    if settings.faults:
        middlewares.append(_inject(faults))
    app = web.Application(client_max_size=settings.max_body, middlewares=middlewares)
    app.add_routes(api.routes())
    app.add_routes([web.get("/v1/events", broadcaster.handle), web.get("/metrics", metrics.handle),
                    web.get("/healthz", _healthz)])
    admin: Admin | None = None
    if settings.faults:
        if listener is None:
            raise ValueError("fault injection needs the listener to refuse connections")
        admin = Admin(faults=faults, store=store, broadcaster=broadcaster, listener=listener)
        app.add_routes(admin.routes())

    async def on_startup(app: web.Application) -> None:
        # Ports created just before a restart never saw their timer fire; give them a fresh one.
        ports.created(store.ports_down())

    async def on_shutdown(app: web.Application) -> None:
        broadcaster.close_all()  # open streams would otherwise hold the graceful shutdown

    async def on_cleanup(app: web.Application) -> None:
        ports.cancel()
        if admin is not None:
            admin.cancel()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app
