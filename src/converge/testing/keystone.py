"""Keystone, OpenStack's identity service, in child processes: for Tempest runs against the real Neutron API.

Why: vendors run Tempest's network API tests in third-party CI against Neutron with Keystone, tokens and
policies as in a cloud (``auth_strategy = noauth`` makes every caller admin, so a policy such as Converge's
admin-only ``converge:sync_state`` is never exercised). :class:`Keystone` creates its database in a
:class:`~converge.testing.mariadb.MariaDB` it is given, writes ``keystone.conf`` into ``workdir`` (fernet
tokens, keys in ``workdir``), runs ``keystone-manage db_sync``, ``fernet_setup``, ``credential_setup`` and
``bootstrap`` (the ``admin`` user, project and role; the ``member``, ``reader``, ``manager`` and ``service``
roles; the identity endpoints in ``RegionOne``), then serves ``keystone.wsgi.api:application`` under
uWSGI on a free loopback port, and stops it by its PID. Keystone runs from a virtualenv of its own
(``venv``: ``.venv-tempest``, made by ``scripts/third-party-ci`` from ``requirements-tempest.lock``), so
the project's lock and ``.venv`` stay Neutron's. :meth:`Keystone.add_service_user` and
:meth:`Keystone.set_endpoint` are what a service needs to be in the catalog and validate tokens. Called by
``scripts/third-party-ci`` (through ``converge.testing.tempest``) and its functional test.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from converge.testing.mariadb import MariaDB, free_port
from converge.testing.neutron import render_ini, tail
from converge.testing.processes import Daemon, StartError

START_TIMEOUT = 60.0
REGION = "RegionOne"
DOMAIN = "Default"


class KeystoneStartError(RuntimeError):
    """A step of the start-up failed; the message ends with the relevant log tail."""


class Keystone:
    """Keystone under uWSGI on its own database; a context manager. ``admin`` / :attr:`admin_password`."""

    def __init__(self, workdir: Path, *, mariadb: MariaDB, venv: Path, database: str = "keystone",
                 processes: int = 2, admin_password: str | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self.mariadb = mariadb
        self.bin = Path(venv).resolve() / "bin"
        self.database = database
        self.processes = processes
        self.admin_password = admin_password or secrets.token_urlsafe(16)
        self.conf = self.workdir / "keystone.conf"
        self.log = self.workdir / "keystone.log"
        self.manage_log = self.workdir / "keystone-manage.log"
        self.port = 0
        self._daemon: Daemon | None = None
        self._admin_token: str | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("Keystone has not been started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        """The identity v3 endpoint, as clients and keystonemiddleware are given it."""
        return f"{self.url}/v3"

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Keystone:
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.port = free_port()
            self.write_config(self.mariadb.create_database(self.database))
            user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
            self.manage("db_sync")
            self.manage("fernet_setup", "--keystone-user", user, "--keystone-group", group)
            self.manage("credential_setup", "--keystone-user", user, "--keystone-group", group)
            self.manage("bootstrap", "--bootstrap-password", self.admin_password,
                        "--bootstrap-admin-url", self.auth_url, "--bootstrap-public-url", self.auth_url,
                        "--bootstrap-internal-url", self.auth_url, "--bootstrap-region-id", REGION)
            self._serve()
        except BaseException:
            self.stop()
            raise
        return self

    def write_config(self, db_url: str) -> None:
        keys = {name: self.workdir / name for name in ("fernet-keys", "credential-keys")}
        self.conf.write_text(render_ini({
            "DEFAULT": {"use_stderr": True, "debug": False},
            "database": {"connection": db_url},
            "token": {"provider": "fernet"},
            "fernet_tokens": {"key_repository": keys["fernet-keys"]},
            "fernet_receipts": {"key_repository": keys["fernet-keys"]},
            "credential": {"key_repository": keys["credential-keys"]},
            # bcrypt's fewest rounds: Tempest creates and authenticates a user per test class, and at the
            # default 12 each hash costs ~0.25 s of one of two cores. A throwaway Keystone needs no more.
            "identity": {"password_hash_rounds": 4},
        }))

    def env(self) -> dict[str, str]:
        return os.environ | {"OS_KEYSTONE_CONFIG_DIR": str(self.workdir),
                             "OS_KEYSTONE_CONFIG_FILES": self.conf.name}

    def manage(self, *args: str) -> None:
        with open(self.manage_log, "ab") as log:
            done = subprocess.run([str(self.bin / "keystone-manage"), "--config-file", str(self.conf), *args],
                                  env=self.env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=300)
        if done.returncode != 0:
            raise KeystoneStartError(f"keystone-manage {args[0]} exited with {done.returncode}\n"
                                     f"{tail(self.manage_log)}")

    def _serve(self) -> None:
        ini = self.workdir / "uwsgi.ini"
        ini.write_text(render_ini({"uwsgi": {
            "module": "keystone.wsgi.api:application", "http-socket": f"127.0.0.1:{self.port}",
            "home": self.bin.parent, "master": "true", "processes": self.processes, "threads": 1,
            "enable-threads": "true", "lazy-apps": "true", "die-on-term": "true", "buffer-size": 65535,
            "need-app": "true", "no-orphans": "true", "add-header": "Connection: close",
        }}))
        self._daemon = Daemon("uWSGI (Keystone)", [str(self.bin / "uwsgi"), "--ini", str(ini)], log=self.log,
                              env=self.env())
        self._daemon.start()
        try:
            self._daemon.wait_until(self._answers, "GET /v3 answered 200", timeout=START_TIMEOUT)
        except StartError as error:
            raise KeystoneStartError(str(error)) from error

    def _answers(self) -> bool:
        try:
            return httpx.get(self.auth_url, timeout=5.0).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        daemon, self._daemon = self._daemon, None
        if daemon is not None:
            daemon.stop()

    def running(self) -> bool:
        return self._daemon is not None and self._daemon.running()

    def __enter__(self) -> Keystone:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- the identity API -----------------------------------------------------------------------------

    def token(self, username: str = "admin", password: str | None = None, project: str = "admin") -> str:
        """A project-scoped token of a user of the default domain."""
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": username, "domain": {"name": DOMAIN}, "password": password or self.admin_password}}},
            "scope": {"project": {"name": project, "domain": {"name": DOMAIN}}}}}
        answer = httpx.post(f"{self.auth_url}/auth/tokens", json=body, timeout=30.0)
        answer.raise_for_status()
        return answer.headers["X-Subject-Token"]

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One identity API call as admin; the answer's JSON (empty for 204)."""
        self._admin_token = self._admin_token or self.token()
        answer = httpx.request(method, f"{self.auth_url}{path}", json=body, timeout=30.0,
                               headers={"X-Auth-Token": self._admin_token})
        answer.raise_for_status()
        return answer.json() if answer.content else {}

    def _find(self, collection: str, name: str) -> str | None:
        found = self.call("GET", f"/{collection}?name={name}")[collection]
        return str(found[0]["id"]) if found else None

    def project(self, name: str) -> str:
        """The id of the project ``name`` in the default domain, created if missing."""
        return self._find("projects", name) or str(
            self.call("POST", "/projects", {"project": {"name": name, "domain_id": DOMAIN.lower()}})["project"]["id"])

    def add_service_user(self, name: str, password: str, *, project: str = "service",
                         roles: tuple[str, ...] = ("service",)) -> None:
        """A user in ``project`` with ``roles`` there: what keystonemiddleware in a service logs in as
        (Keystone lets the ``service`` role validate tokens)."""
        project_id = self.project(project)
        user_id = self._find("users", name) or str(self.call("POST", "/users", {"user": {
            "name": name, "password": password, "domain_id": DOMAIN.lower(), "default_project_id": project_id}})
            ["user"]["id"])
        for role in roles:
            role_id = self._find("roles", role)
            if role_id is None:
                raise KeystoneStartError(f"no role {role!r} in Keystone")
            self.call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{role_id}")

    def set_endpoint(self, service_type: str, name: str, url: str) -> None:
        """The service ``name`` of ``service_type`` in the catalog with one public endpoint at ``url`` in
        :data:`REGION` (an earlier endpoint of it is replaced: a second Neutron comes up on another port)."""
        services = [s for s in self.call("GET", f"/services?type={service_type}")["services"] if s["name"] == name]
        service_id = (str(services[0]["id"]) if services else str(self.call("POST", "/services", {"service": {
            "type": service_type, "name": name, "enabled": True}})["service"]["id"]))
        for endpoint in self.call("GET", f"/endpoints?service_id={service_id}")["endpoints"]:
            self.call("DELETE", f"/endpoints/{endpoint['id']}")
        for interface in ("public", "internal", "admin"):
            self.call("POST", "/endpoints", {"endpoint": {"service_id": service_id, "interface": interface,
                                                          "url": url, "region_id": REGION, "enabled": True}})

    def log_tail(self, lines: int = 40) -> str:
        return f"{tail(self.manage_log, lines)}\n{tail(self.log, lines)}"
