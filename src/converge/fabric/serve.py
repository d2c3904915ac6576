"""``python -m converge.fabric``: run the reference fabric controller as a process.

Why a process of its own: the sync engine talks to controllers over the network, and its tests and
benchmarks must see real sockets, real restarts and a real refused connection. This module owns the
process lifecycle: options, tokens, the listening socket (closed and reopened on the same port by the
``refuse`` fault; TLS with ``--tls-cert``/``--tls-key``, client certificates required with
``--tls-client-ca``), the port file for launchers, and a clean shutdown on SIGTERM/SIGINT that closes the
database. Called by ``__main__.py``, by operators and by ``converge.testing.fabric.FabricProcess``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sqlite3
import ssl
import sys
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from converge.core.errors import ConfigurationError
from converge.core.tls import server_context
from converge.fabric.app import ACCESS_LOG_FORMAT, WithholdRequestBytes, create_app
from converge.fabric.errors import ErrorCode
from converge.fabric.httpio import MIB, Settings, json_response
from converge.fabric.schema import SchemaMismatch
from converge.fabric.state import Store

log = logging.getLogger("converge.fabric")

EXIT_USAGE = 2
TOKEN_ENV = "CONVERGE_FABRIC_TOKEN"
ADMIN_TOKEN_ENV = "CONVERGE_FABRIC_ADMIN_TOKEN"


class UsageError(Exception):
    """A configuration the controller refuses to start with; the message says what to fix."""


def parse_listen(text: str) -> tuple[str, int]:
    host, colon, port_text = text.rpartition(":")
    if not colon or not host:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"--listen {text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"--listen {text!r}: port {port} is out of range")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost could resolve anywhere


def read_token(path: str | None, env: str, option: str) -> str:
    if path is not None:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"{option} {path}: {exc.strerror}") from None
        if not token:
            raise UsageError(f"{option} {path}: the file is empty")
        return token
    token = os.environ.get(env, "").strip()
    if not token:
        raise UsageError(f"no token: pass {option} PATH or set {env}")
    return token


class SiteListener:
    """The TCP site of one runner, which can be closed and opened again on the same host and port."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context  # None: plain HTTP
        self.runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    async def open(self) -> None:
        assert self.runner is not None, "SiteListener.open before the runner is set up"
        site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True, ssl_context=self.ssl_context)
        await site.start()
        self._site = site
        # With port 0 the OS picked one: keep it, so a reopened socket lands on the same port.
        self.port = self.runner.addresses[0][1]

    async def close(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None
        server = self.runner.server if self.runner else None
        for connection in list(server.connections if server else ()):
            # Idle keep-alive connections close now; busy ones right after their current answer.
            connection.close()


def _write_port_file(path: Path, port: int) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(f"{port}\n", encoding="utf-8")
    temporary.replace(path)  # atomic: a launcher polling the file never reads half a number


@web.middleware
async def _require_client_certificate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With ``--tls-client-ca``: a request whose connection presented no certificate is refused, saying so (one
    that presented an untrusted certificate never got past the handshake)."""
    transport = request.transport
    if transport is None or not transport.get_extra_info("peercert"):
        return json_response({"error": ErrorCode.CLIENT_CERTIFICATE_REQUIRED.value,
                              "message": "this controller requires a TLS client certificate"}, status=403)
    return await handler(request)


async def _serve(settings: Settings, store: Store, listener: SiteListener, port_file: Path | None) -> None:
    app = create_app(settings, store, listener=listener)
    if listener.ssl_context is not None and listener.ssl_context.verify_mode is ssl.CERT_OPTIONAL:
        app.middlewares.insert(0, _require_client_certificate)  # before anything else answers, /healthz too
    runner = web.AppRunner(app, access_log_format=ACCESS_LOG_FORMAT, shutdown_timeout=5.0)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        listener.runner = runner
        await listener.open()
        log.info("listening on %s://%s:%d (faults %s)", "https" if listener.ssl_context else "http",
                 listener.host, listener.port, "on" if settings.faults else "off")
        if port_file is not None:
            _write_port_file(port_file, listener.port)
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()


def build_parser(prog: str = "python -m converge.fabric") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog,
                                description="The Converge reference fabric controller (docs/protocol.md).")
    p.add_argument("--listen", default="127.0.0.1:8780", help="HOST:PORT (port 0: the OS picks one)")
    p.add_argument("--allow-non-loopback", action="store_true",
                   help="allow listening on an address other than loopback")
    p.add_argument("--db", required=True, help="SQLite database file (created if missing)")
    p.add_argument("--token-file", help=f"file holding the API bearer token (else ${TOKEN_ENV})")
    p.add_argument("--admin-token-file", help=f"file holding the admin token (else ${ADMIN_TOKEN_ENV})")
    p.add_argument("--faults", action="store_true", help="enable the /v1/admin fault injection API")
    p.add_argument("--port-up-delay", type=float, default=0.5, metavar="SECONDS",
                   help="delay before a created port goes up (default 0.5)")
    p.add_argument("--max-body", type=int, default=16 * MIB, metavar="BYTES",
                   help="largest request body accepted (default 16 MiB)")
    p.add_argument("--max-operations", type=int, default=10_000, metavar="N",
                   help="most operations in one batch (default 10000)")
    p.add_argument("--max-mtu", type=int, default=9000, metavar="N", help="largest network mtu (default 9000)")
    p.add_argument("--sse-keepalive", type=float, default=15.0, metavar="SECONDS",
                   help="interval of keepalive comments on /v1/events (default 15)")
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM, chain included)")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's unencrypted private key (PEM)")
    p.add_argument("--tls-client-ca", metavar="FILE",
                   help="require every client to present a certificate signed by this CA (PEM)")
    p.add_argument("--port-file", help="write the bound port to this file once listening")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The listener's TLS context from ``--tls-*``, None for plain HTTP."""
    if not (args.tls_cert or args.tls_key or args.tls_client_ca):
        return None
    if not (args.tls_cert and args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together (and --tls-client-ca needs both)")
    try:
        return server_context(args.tls_cert, args.tls_key, args.tls_client_ca)
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None


def _settings(args: argparse.Namespace) -> tuple[Settings, str, int]:
    host, port = parse_listen(args.listen)
    if not is_loopback(host) and not args.allow_non_loopback:
        raise UsageError(f"--listen {args.listen}: not a loopback address; pass --allow-non-loopback "
                         "to serve other hosts")
    token = read_token(args.token_file, TOKEN_ENV, "--token-file")
    admin_token = None
    if args.faults:
        admin_token = read_token(args.admin_token_file, ADMIN_TOKEN_ENV, "--admin-token-file")
        if admin_token == token:
            raise UsageError("the admin token must differ from the API token")
    for name in ("max_body", "max_operations"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.port_up_delay < 0 or args.sse_keepalive <= 0 or args.max_mtu < 68:
        raise UsageError("--port-up-delay must be >= 0, --sse-keepalive > 0 and --max-mtu >= 68")
    return Settings(token=token, admin_token=admin_token, faults=args.faults,
                    port_up_delay=args.port_up_delay, max_body=args.max_body,
                    max_operations=args.max_operations, max_mtu=args.max_mtu,
                    keepalive=args.sse_keepalive), host, port


def main(argv: list[str] | None = None, *, prog: str = "python -m converge.fabric") -> int:
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.server").addFilter(WithholdRequestBytes())
    try:
        settings, host, port = _settings(args)
        tls = tls_context(args)
    except UsageError as exc:
        print(f"converge.fabric: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        store = Store.open(args.db)
    except (OSError, sqlite3.Error, SchemaMismatch, RuntimeError) as exc:
        print(f"converge.fabric: cannot open --db {args.db}: {exc}", file=sys.stderr)
        return 1
    log.info("opened %s: %d objects in %d roots", args.db, len(store.index.objects), len(store.index.roots))
    try:
        asyncio.run(_serve(settings, store, SiteListener(host, port, tls),
                           Path(args.port_file) if args.port_file else None))
    except OSError as exc:
        log.error("cannot listen on %s: %s", args.listen, exc)
        return 1
    finally:
        store.close()
    log.info("stopped")
    return 0
