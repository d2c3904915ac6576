"""Settings shared by the commands: database URL, controller URLs and token, output mode.

Secrets come from files or the environment, never from a command-line value that ``ps`` would show, and
are never printed: ``Settings.describe()`` masks them.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from converge.backends.fabric import FabricClient
from converge.core.errors import ConfigurationError
from converge.core.inifile import read_neutron_config
from converge.store import db, migrate

DEFAULT_DB = "sqlite:///var/converge.sqlite"


@dataclass(frozen=True)
class Settings:
    db_url: str
    controllers: tuple[str, ...]
    token_file: str | None
    json: bool
    config_token: str | None = None  # [converge] token of a --config-file

    def engine(self, *, upgrade: bool = True) -> Engine:
        if self.db_url.startswith("sqlite:///") and not self.db_url.startswith("sqlite:///:"):
            Path(self.db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = db.make_engine(self.db_url)
        if upgrade:
            migrate.upgrade(engine)
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

    def backend(self, writer: str = "converge-cli") -> FabricClient:
        if not self.controllers:
            raise ConfigurationError("no controller URL: give --controller or set CONVERGE_CONTROLLERS")
        return FabricClient(list(self.controllers), self.token(), writer=writer)

    def describe(self) -> dict[str, object]:
        return {
            "db": _mask_url(self.db_url),
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
        help="Neutron configuration file(s) (repeatable, like Neutron's): [database] connection and "
        "[converge] controller_urls, token, token_file; for an agent run beside Neutron",
    )
    parser.add_argument(
        "--controller",
        action="append",
        default=None,
        metavar="URL",
        help="controller URL, repeat for failover (env CONVERGE_CONTROLLERS, comma-separated)",
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
    parent.add_argument("--db", default=argparse.SUPPRESS)
    parent.add_argument("--config-file", action="append", default=argparse.SUPPRESS, metavar="FILE")
    parent.add_argument("--controller", action="append", default=argparse.SUPPRESS, metavar="URL")
    parent.add_argument("--token-file", default=argparse.SUPPRESS)
    parent.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    return parent


COMMON = common()


def settings(args: argparse.Namespace) -> Settings:
    conf = read_neutron_config(args.config_file) if args.config_file else {}
    urls = (args.controller or [u for u in os.environ.get("CONVERGE_CONTROLLERS", "").split(",") if u.strip()]
            or [u for u in conf.get("controller_urls", "").split(",") if u.strip()])
    db = args.db or os.environ.get("CONVERGE_DB") or conf.get("db") or DEFAULT_DB
    token_file = args.token_file or conf.get("token_file")
    return Settings(db, tuple(u.strip() for u in urls), token_file, bool(args.json), conf.get("token"))
