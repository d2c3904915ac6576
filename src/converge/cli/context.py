"""Settings shared by the commands: database URL, the backend and how to reach it, output mode.

Each value comes from the command line, else the environment, else the ``--config-file`` Neutron files,
else a default. The backend (``--backend fabric|ovn``) is built by the one selector,
``converge.backends.select``: the fabric needs controller URLs and a token, OVN its NB remotes. Secrets come
from files or the environment, never from a command-line value that ``ps`` would show, and are never
printed: ``Settings.describe()`` masks them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from converge.backends.base import Backend
from converge.backends.select import DEFAULT_OVN_NB, BackendKind, BackendSettings, backend_kind, make_backend
from converge.core.errors import ConfigurationError
from converge.core.ids import InvalidId, RootId, root_id
from converge.core.inifile import number, read_neutron_config
from converge.core.tls import TlsFiles, from_config
from converge.store import db, migrate

DEFAULT_DB = "sqlite:///var/converge.sqlite"


@dataclass(frozen=True)
class Settings:
    db_url: str
    controllers: tuple[str, ...]
    token_file: str | None
    json: bool
    config_token: str | None = None  # [converge] token of a --config-file
    backend_kind: BackendKind = BackendKind.FABRIC
    ovn_nb: tuple[str, ...] = (DEFAULT_OVN_NB,)
    ovn_timeout: float = 10.0
    gateway_chassis: tuple[str, ...] = ()
    tls: TlsFiles = TlsFiles()  # [converge] cafile, certfile, keyfile, insecure of a --config-file
    timeout: float = 10.0  # [converge] request_timeout: seconds per fabric request
    connect_timeout: float = 2.0
    file_conf: Mapping[str, str] = field(default_factory=dict)  # what the --config-file files said, read once

    def engine(self, *, upgrade: bool = True) -> Engine:
        if self.db_url.startswith("sqlite:///") and not self.db_url.startswith("sqlite:///:"):
            folder = Path(self.db_url.removeprefix("sqlite:///")).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise ConfigurationError(f"cannot make the store's folder {folder}: {err.strerror}") from None
        engine = db.make_engine(self.db_url)
        if upgrade:
            # The expand branch only: safe with any server running older code, which a contract may not be
            # (on Neutron's database the contract is neutron-db-manage's, or `converge db upgrade`'s).
            migrate.upgrade(engine, migrate.Phase.EXPAND)
        return engine

    def token(self) -> str:
        if self.token_file:
            try:
                token = Path(self.token_file).read_text().strip()
            except OSError as err:
                raise ConfigurationError(f"cannot read token file {self.token_file}: {err.strerror}") from None
        else:
            token = os.environ.get("CONVERGE_TOKEN", "").strip() or (self.config_token or "")
        if not token:
            raise ConfigurationError("no controller token: give --token-file or set CONVERGE_TOKEN")
        return token

    @property
    def has_backend(self) -> bool:
        """Whether a controller is configured at all (the fabric needs URLs; OVN has a default remote)."""
        return self.backend_kind is BackendKind.OVN or bool(self.controllers)

    def backend(self, writer: str = "converge-cli") -> Backend:
        if self.backend_kind is BackendKind.OVN:
            return make_backend(BackendSettings(kind=BackendKind.OVN, ovn_connections=self.ovn_nb,
                                                timeout=self.ovn_timeout, gateway_chassis=self.gateway_chassis,
                                                writer=writer, tls=self.tls))
        if not self.controllers:
            raise ConfigurationError("no controller URL: give --controller or set CONVERGE_CONTROLLERS")
        return make_backend(BackendSettings(kind=BackendKind.FABRIC, controller_urls=self.controllers,
                                            token=self.token(), timeout=self.timeout,
                                            connect_timeout=self.connect_timeout, writer=writer, tls=self.tls))

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {"db": _mask_url(self.db_url), "backend": self.backend_kind.value}
        if self.backend_kind is BackendKind.OVN:
            return described | {"ovn_nb": list(self.ovn_nb)}
        return described | {
            "controllers": list(self.controllers),
            "token": "(file)" if self.token_file
            else "(env)" if os.environ.get("CONVERGE_TOKEN")
            else "(config file)" if self.config_token
            else None,
        }


def _mask_url(url: str) -> str:
    """Hide a password in a database URL (mysql+pymysql://user:secret@host/db)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def root_arg(value: str) -> RootId:
    """``--root``'s type: a bad name is a usage error (exit 2) naming it, before anything is read or sent."""
    try:
        return root_id(value)
    except InvalidId as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_common(parser: argparse.ArgumentParser) -> None:
    """The options every command takes, with their defaults. Sub-commands take them too (``COMMON``,
    without defaults) so that ``converge status --json`` and ``converge --json status`` both work."""
    parser.add_argument(
        "--db",
        default=None,
        help=f"SQLAlchemy URL of the intent store (env CONVERGE_DB; else [database] connection of "
        f"--config-file; default {DEFAULT_DB})",
    )
    parser.add_argument(
        "--config-file",
        action="append",
        default=None,
        metavar="FILE",
        help="Neutron configuration file(s) (repeatable, like Neutron's): [database] connection and the "
        "[converge] options of the controller (backend, controller_urls, token, token_file, request_timeout, "
        "connect_timeout, ovn_*) and, for sync run, of the worker",
    )
    parser.add_argument(
        "--backend",
        default=None,
        choices=[k.value for k in BackendKind],
        help="the controller's kind (env CONVERGE_BACKEND; else [converge] backend of --config-file; "
        "default fabric)",
    )
    parser.add_argument(
        "--controller",
        action="append",
        default=None,
        metavar="URL",
        help="fabric controller URL, repeat for failover (env CONVERGE_CONTROLLERS, comma-separated)",
    )
    parser.add_argument(
        "--ovn-nb",
        action="append",
        default=None,
        metavar="REMOTE",
        help=f"OVN Northbound DB remote (tcp:IP:PORT, ssl:IP:PORT, unix:PATH), repeat for a cluster (env "
        f"CONVERGE_OVN_NB, comma-separated; else [converge] ovn_nb_connection; default {DEFAULT_OVN_NB})",
    )
    parser.add_argument(
        "--token-file",
        default=os.environ.get("CONVERGE_TOKEN_FILE"),
        help="file holding the controller's bearer token (env CONVERGE_TOKEN_FILE, "
        "or CONVERGE_TOKEN with the token itself)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def common() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    parent.add_argument("--db", default=argparse.SUPPRESS,
                        help="intent store URL (env CONVERGE_DB; else [database] connection of --config-file)")
    parent.add_argument("--config-file", action="append", default=argparse.SUPPRESS, metavar="FILE",
                        help="Neutron's files, repeated as Neutron takes them (--config-file neutron.conf "
                             "--config-file ml2_conf.ini): [database] and [converge] come from them")
    parent.add_argument("--backend", default=argparse.SUPPRESS, choices=[k.value for k in BackendKind],
                        help="the controller's kind (env CONVERGE_BACKEND; else [converge] backend)")
    parent.add_argument("--controller", action="append", default=argparse.SUPPRESS, metavar="URL",
                        help="fabric controller URL, repeat for failover (env CONVERGE_CONTROLLERS)")
    parent.add_argument("--ovn-nb", action="append", default=argparse.SUPPRESS, metavar="REMOTE",
                        help="OVN Northbound DB remote, repeat for a cluster (env CONVERGE_OVN_NB)")
    parent.add_argument("--token-file", default=argparse.SUPPRESS,
                        help="file holding the fabric controller's token (env CONVERGE_TOKEN_FILE)")
    parent.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    return parent


COMMON = common()


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def settings(args: argparse.Namespace) -> Settings:
    conf = read_neutron_config(args.config_file) if args.config_file else {}
    urls = (args.controller or _split(os.environ.get("CONVERGE_CONTROLLERS", ""))
            or _split(conf.get("controller_urls", "")))
    db = args.db or os.environ.get("CONVERGE_DB") or conf.get("db") or DEFAULT_DB
    token_file = args.token_file or conf.get("token_file")
    kind = backend_kind(args.backend or os.environ.get("CONVERGE_BACKEND") or conf.get("backend") or "fabric")
    ovn_nb = (args.ovn_nb or _split(os.environ.get("CONVERGE_OVN_NB", "")) or _split(conf.get("ovn_nb_connection", ""))
              or [DEFAULT_OVN_NB])
    return Settings(db, tuple(u.strip() for u in urls), token_file, bool(args.json), conf.get("token"),
                    backend_kind=kind, ovn_nb=tuple(r.strip() for r in ovn_nb),
                    ovn_timeout=number(conf, "ovn_timeout", float) or 10.0,
                    tls=from_config(conf), gateway_chassis=tuple(_split(conf.get("ovn_gateway_chassis", ""))),
                    timeout=number(conf, "request_timeout", float) or 10.0,
                    connect_timeout=number(conf, "connect_timeout", float) or 2.0, file_conf=conf)
