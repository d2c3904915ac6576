"""The real Neutron API in child processes, for integration tests: MariaDB, neutron-db-manage, uWSGI.

Why: the Converge ML2 driver runs inside Neutron's processes (every uWSGI worker and the periodic-workers
master call its ``initialize()``), so it has to be tested there, not against a stub. :class:`NeutronStack`
writes ``neutron.conf`` and ``ml2_conf.ini`` into ``workdir`` (noauth, ``fake://`` messaging, no Nova),
migrates a fresh database, serves ``neutron.wsgi.api:application`` under uWSGI on a free loopback port and
runs ``neutron-periodic-workers``; every process is stopped by its PID. Two stacks can share one database:
the second one, given ``new_database=False``, neither recreates nor migrates it (e.g. each stack on its own
node of a Galera cluster, ``converge.testing.galera``). Called by the functional tests
(``tests/functional/test_neutron_harness.py``) and, later, the driver's end-to-end tests and benchmarks.
With ``auth_strategy = noauth`` every request runs as admin of the project ``fake_project_id``: a POST
without ``project_id`` creates a resource owned by that project, so tests pass it (see :func:`owned`).
With ``keystone_authtoken`` (the options of that section: a Keystone's URL and a service user) the API runs
``auth_strategy = keystone`` instead, as in a cloud: tokens and policies apply (``converge.testing.keystone``,
Tempest's runs in ``converge.testing.tempest``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from converge.testing.mariadb import MariaDB, free_port

if TYPE_CHECKING:
    from openstack.connection import Connection

Sections = Mapping[str, Mapping[str, object]]

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
BIN = Path(sys.executable).parent  # the virtualenv's bin: uwsgi, neutron-db-manage, neutron-periodic-workers
PROJECT_ID = "converge-test-project"


def owned(project_id: str = PROJECT_ID, **attributes: Any) -> dict[str, Any]:
    """Attributes for a create call (openstacksdk keywords or a JSON body) owned by ``project_id``.

    Under noauth the caller is admin of ``fake_project_id``; without ``project_id`` everything lands there."""
    return {"project_id": project_id, **attributes}


def render_ini(sections: Sections) -> str:
    """An oslo.config file: lists become comma-separated, booleans ``True``/``False``."""
    out: list[str] = []
    for name, options in sections.items():
        out.append(f"[{name}]")
        for key, value in options.items():
            text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
            out.append(f"{key} = {text}")
        out.append("")
    return "\n".join(out)


def merge(base: Sections, extra: Sections) -> dict[str, dict[str, object]]:
    merged = {name: dict(options) for name, options in base.items()}
    for name, options in extra.items():
        merged.setdefault(name, {}).update(options)
    return merged


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = STOP_TIMEOUT) -> int | None:
    """SIGTERM the PID, wait, then SIGKILL after ``timeout``; the exit code, or None if it was not running.

    The SIGKILL goes to the process group the child leads (started with ``start_new_session``, so its id is
    the child's PID): a master killed outright leaves no workers behind."""
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no {path.name})"
    return "\n".join(text.splitlines()[-lines:])


class NeutronStartError(RuntimeError):
    """A step of the start-up failed; the message ends with the relevant log tail."""


class NeutronStack:
    """MariaDB + migrated schema + the API under uWSGI + periodic workers; a context manager."""

    def __init__(self, workdir: Path, *, mechanism_drivers: Sequence[str] = ("logger",),
                 service_plugins: Sequence[str] = (), config: Sections | None = None,
                 ml2_config: Sections | None = None, processes: int = 2, threads: int = 1,
                 periodic_workers: bool = True, mariadb: MariaDB | None = None,
                 database: str | None = None, new_database: bool = True, debug: bool = False,
                 tenant_network_type: str = "vxlan", keystone_authtoken: Mapping[str, object] | None = None) -> None:
        if not new_database and (mariadb is None or database is None):
            raise ValueError("a stack on an existing database needs its server (mariadb) and its name (database)")
        self.workdir = Path(workdir).resolve()  # config files and servers need absolute paths
        self.mechanism_drivers = list(mechanism_drivers)
        self.service_plugins = list(service_plugins)
        self.extra_config = config or {}
        self.extra_ml2_config = ml2_config or {}
        self.processes, self.threads = processes, threads
        self.periodic_workers = periodic_workers
        self.debug = debug
        self.tenant_network_type = tenant_network_type  # "geneve" for ML2/OVN-style project networks
        self.keystone_authtoken = keystone_authtoken  # None: noauth
        self._own_mariadb = mariadb is None
        self.mariadb = mariadb or MariaDB(self.workdir / "mariadb", durable=False)
        self.database = database or f"neutron_{secrets.token_hex(4)}"
        self.new_database = new_database  # False: another stack made and migrated it
        self.neutron_conf = self.workdir / "neutron.conf"
        self.ml2_conf = self.workdir / "ml2_conf.ini"
        self.uwsgi_ini = self.workdir / "uwsgi.ini"
        self.api_log = self.workdir / "neutron-api.log"
        self.periodic_log = self.workdir / "neutron-periodic.log"
        self.db_manage_log = self.workdir / "neutron-db-manage.log"
        self.agent_log = self.workdir / "converge-agent.log"  # its oslo.log --log-file
        self.agent_output = self.workdir / "converge-agent.out"  # what it printed before logging was set up
        self._agents: list[subprocess.Popen[bytes]] = []
        self._api_log_offset = 0
        self.port = 0  # chosen on the first start, then kept by restart_api()
        self.db_url = ""
        self._api: subprocess.Popen[bytes] | None = None
        self._periodic: subprocess.Popen[bytes] | None = None
        self.timings: dict[str, float] = {}  # seconds per start-up step: mariadb, migrate, api

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the Neutron API has not been started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_files(self) -> list[Path]:
        return [self.neutron_conf, self.ml2_conf]

    def config_args(self) -> list[str]:
        return [arg for path in self.config_files for arg in ("--config-file", str(path))]

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> NeutronStack:
        """Run every step in order, noting its duration in :attr:`timings`; on any failure stop what started."""
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            if self._own_mariadb:
                self._timed("mariadb", self.mariadb.start)
            self.db_url = (self.mariadb.create_database(self.database) if self.new_database
                           else self.mariadb.url(self.database))
            self.write_config()
            if self.new_database:
                self._timed("migrate", self.migrate)
            self._timed("api", self.start_api)
            if self.periodic_workers:
                self.start_periodic_workers()
        except BaseException:
            self.stop()
            raise
        return self

    def _timed(self, step: str, action: Callable[[], None]) -> None:
        began = time.monotonic()
        action()
        self.timings[step] = time.monotonic() - began

    def write_config(self) -> None:
        state = self.workdir / "state"
        (state / "lock").mkdir(parents=True, exist_ok=True)
        paste = self.workdir / "api-paste.ini"
        shutil.copyfile(Path(sys.prefix) / "etc" / "neutron" / "api-paste.ini", paste)
        neutron: Sections = {
            "DEFAULT": {
                "core_plugin": "ml2", "service_plugins": self.service_plugins, "auth_strategy": "noauth",
                "transport_url": "fake://", "api_workers": self.processes, "rpc_workers": 0,
                "rpc_state_report_workers": 0, "api_paste_config": paste, "state_path": state,
                "notify_nova_on_port_status_changes": False, "notify_nova_on_port_data_changes": False,
                "debug": self.debug, "use_stderr": True,
            },
            "database": {"connection": self.db_url},
            "oslo_concurrency": {"lock_path": state / "lock"},
            "oslo_messaging_notifications": {"driver": "noop"},
        }
        # project_network_types is the current name of [ml2] tenant_network_types (its deprecated alias).
        # geneve as ML2/OVN deployments configure it; its 65,536 VNIs are rows Neutron writes once per fresh
        # database (about 1.5-3 s of the first API start here), also when projects use vxlan.
        ml2: Sections = {
            "ml2": {"type_drivers": "flat,vlan,vxlan,geneve", "project_network_types": self.tenant_network_type,
                    "mechanism_drivers": self.mechanism_drivers, "extension_drivers": "port_security"},
            "ml2_type_vxlan": {"vni_ranges": "1:1000"},
            "ml2_type_geneve": {"vni_ranges": "1:65536", "max_header_size": 38},
            "ml2_type_flat": {"flat_networks": "*"},
            "ml2_type_vlan": {"network_vlan_ranges": "physnet1:100:200"},
        }
        if self.keystone_authtoken is not None:
            neutron = merge(neutron, {"DEFAULT": {"auth_strategy": "keystone"},
                                      "keystone_authtoken": self.keystone_authtoken})
        self.neutron_conf.write_text(render_ini(merge(neutron, self.extra_config)))
        self.ml2_conf.write_text(render_ini(merge(ml2, self.extra_ml2_config)))

    def migrate(self) -> None:
        with open(self.db_manage_log, "ab") as log:
            done = subprocess.run([str(BIN / "neutron-db-manage"), *self.config_args(), "upgrade", "heads"],
                                  env=self.env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=300)
        if done.returncode != 0:
            raise NeutronStartError(f"neutron-db-manage exited with {done.returncode}\n{tail(self.db_manage_log)}")

    def env(self) -> dict[str, str]:
        """The environment of the stack's processes. stevedore caches entry points per sys.path under
        XDG_CACHE_HOME and can miss a driver installed since (seen: an extension driver "could not load"
        in neutron-periodic-workers only): a cache of the stack's own is always fresh."""
        return os.environ | {"XDG_CACHE_HOME": str(self.workdir / "cache")}

    def start_api(self) -> None:
        self.port = self.port or free_port()
        self.uwsgi_ini.write_text(render_ini({"uwsgi": {
            "module": "neutron.wsgi.api:application", "http-socket": f"127.0.0.1:{self.port}",
            "home": sys.prefix, "master": "true", "processes": self.processes, "threads": self.threads,
            "enable-threads": "true", "lazy-apps": "true", "die-on-term": "true", "thunder-lock": "true",
            "buffer-size": 65535, "need-app": "true", "no-orphans": "true", "skip-atexit": "true",
            # http-socket closes the connection after each answer without saying so: a client that reuses
            # it (openstacksdk's pooled session does) gets "Connection reset by peer" now and then.
            "add-header": "Connection: close",
        }}))
        env = self.env() | {"OS_NEUTRON_CONFIG_DIR": str(self.workdir),
                            "OS_NEUTRON_CONFIG_FILES": ";".join(p.name for p in self.config_files)}
        self._api_log_offset = self.api_log.stat().st_size if self.api_log.exists() else 0
        with open(self.api_log, "ab") as log:
            self._api = subprocess.Popen([str(BIN / "uwsgi"), "--ini", str(self.uwsgi_ini)], env=env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self._wait_api()

    def _wait_api(self) -> None:
        """Until GET /v2.0/networks answers 200 and every worker has loaded the app: with lazy-apps each
        worker loads it (and the ML2 drivers) itself, so one 200 proves only one worker is up."""
        assert self._api is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._api.poll() is not None:
                raise NeutronStartError(f"uWSGI exited with {self._api.returncode}\n{self.api_log_tail()}")
            log = self._api_log_since_start()
            if b"DAMN ! worker" in log:  # the master would respawn a worker that cannot load the app forever
                raise NeutronStartError(f"a uWSGI worker died while loading Neutron\n{self.api_log_tail()}")
            try:
                answer = httpx.get(f"{self.url}/v2.0/networks", timeout=5.0)
                # With Keystone, an anonymous GET is refused (401) by the app's first filter: the log's
                # "(default app)" lines say that every worker loaded all of it.
                ready = (200,) if self.keystone_authtoken is None else (200, 401)
                if answer.status_code in ready and log.count(b"(default app)") >= self.processes:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise NeutronStartError(f"GET /v2.0/networks not 200 within {START_TIMEOUT:.0f} s\n{self.api_log_tail()}")

    def _api_log_since_start(self) -> bytes:
        with open(self.api_log, "rb") as log:
            log.seek(self._api_log_offset)
            return log.read()

    def start_periodic_workers(self) -> None:
        with open(self.periodic_log, "ab") as log:
            self._periodic = subprocess.Popen([str(BIN / "neutron-periodic-workers"), *self.config_args()],
                                              env=self.env(), stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True)

    def start_agent(self, *args: str) -> subprocess.Popen[bytes]:
        """``converge-agent`` (a sync worker with the port-status listener, as an OpenStack service) in its own
        process, with ``args`` (default: this stack's config files) and ``--log-file`` :attr:`agent_log`;
        :meth:`stop` stops it, as does :func:`stop_process` (SIGTERM: it releases its leases)."""
        argv = [str(BIN / "converge-agent"), *(args or self.config_args()), "--log-file", str(self.agent_log)]
        with open(self.agent_output, "ab") as out:
            agent = subprocess.Popen(argv, env=self.env(), stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._agents.append(agent)
        return agent

    def restart_api(self) -> None:
        """Stop the uWSGI master and start it again on the same port and database."""
        stop_process(self._api)
        self._api = None
        self.start_api()

    def stop(self) -> None:
        """uWSGI master first, then the periodic workers and agents, then MariaDB if this stack started it."""
        api, self._api = self._api, None
        periodic, self._periodic = self._periodic, None
        agents, self._agents = self._agents, []
        stop_process(api)
        stop_process(periodic)
        for agent in agents:
            stop_process(agent)
        if self._own_mariadb:
            self.mariadb.stop()

    def running(self) -> dict[str, bool]:
        return {name: process is not None and process.poll() is None
                for name, process in (("api", self._api), ("periodic", self._periodic))}

    def __enter__(self) -> NeutronStack:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- clients and logs -----------------------------------------------------------------------------

    def connection(self) -> Connection:
        """An openstacksdk connection whose network proxy talks to :attr:`url` without a catalog."""
        import openstack  # noqa: PLC0415 - only the callers that drive Neutron pay for the import

        # The "none" auth plugin answers its endpoint for every service, so no catalog is needed; the
        # caller's clouds.yaml and OS_* variables must not leak in.
        return openstack.connect(auth_type="none", auth={"endpoint": self.url},
                                 load_yaml_config=False, load_envvars=False)

    def api_log_tail(self, lines: int = 40) -> str:
        return tail(self.api_log, lines)

    def periodic_log_tail(self, lines: int = 40) -> str:
        return tail(self.periodic_log, lines)

    def agent_log_tail(self, lines: int = 40) -> str:
        return f"{tail(self.agent_output, lines)}\n{tail(self.agent_log, lines)}"
