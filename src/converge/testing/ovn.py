"""OVN in child processes, for tests: a control plane (NB, SB, northd) and a chassis whose "VMs" ping.

Why real daemons: the OVN backend (``converge.backends.ovn``, docs/design/ovn.md) has to be tested against
a real Northbound DB — its transactions and garbage collection, northd and ovn-controller reacting to what
it writes, NB going away and coming back — and the ports it writes have to come up and carry packets.

:class:`OvnControlPlane` creates the NB and SB databases in ``workdir`` and runs one ``ovsdb-server`` for
each (a unix socket and a loopback TCP port) and ``ovn-northd``. :class:`OvnDataplane` is one chassis on
Open vSwitch's userspace datapath (the kernel here has no openvswitch module): a conf.db, ``ovs-vswitchd``,
br-int and ``ovn-controller``; :meth:`OvnDataplane.add_vm` plugs a network namespace into br-int as a
logical port. ``ovs-vswitchd`` runs in a network namespace of its own, so the devices that datapath makes
(``br-int``, ``ovs-netdev``) and the host ends of the veths never land in the root namespace, never clash
with another chassis', and vanish with that namespace. Every daemon runs in the foreground under
``subprocess``, in a session of its own, with its run, log and DB directories in ``workdir`` (nothing
touches /var/run), and is stopped by its PID: SIGTERM, then SIGKILL. One dataplane per control plane:
chassis share the encapsulation address 127.0.0.1, which SB allows once.

Called by ``tests/functional/test_ovn_harness.py`` and the OVN backend's functional tests.
``scripts/setup`` installs the Debian packages.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from converge.testing.mariadb import free_port
from converge.testing.processes import (
    COMMAND_TIMEOUT,
    START_TIMEOUT,
    CommandError,
    Daemon,
    accepts,
    blamed_on,
    program,
    run,
)

OVN_SCHEMAS = Path("/usr/share/ovn")
VSWITCH_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
# What the daemons and their clients read to find each other and where to write: all pointed at workdir.
DIRECTORY_VARIABLES = ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVN_RUNDIR", "OVN_LOGDIR", "OVN_DBDIR")
# Would send ovn-nbctl/ovn-sbctl to someone else's daemon or database.
FOREIGN_VARIABLES = ("OVN_NB_DAEMON", "OVN_SB_DAEMON", "OVN_NB_DB", "OVN_SB_DB")


def ovs_environment(workdir: Path) -> dict[str, str]:
    """The environment of the daemons and of their clients: run, log and DB directories in ``workdir``."""
    inherited = {k: v for k, v in os.environ.items() if k not in FOREIGN_VARIABLES}
    return inherited | dict.fromkeys(DIRECTORY_VARIABLES, str(workdir))


def ovs_daemon(name: str, argv: Sequence[str], *, workdir: Path, env: Mapping[str, str],
               prefix: Sequence[str] = ()) -> Daemon:
    """An OVS/OVN daemon in the foreground with its PID file and log in ``workdir``; started."""
    log = workdir / f"{name}.log"
    daemon = Daemon(name, [*prefix, *argv, f"--pidfile={workdir / name}.pid", f"--log-file={log}", "--no-chdir",
                           "-vconsole:off"],  # fatal errors still go to stderr, and so to the log
                    log=log, env=env)
    daemon.start()
    return daemon


def wait_listening(server: Daemon, sock: Path) -> None:
    server.wait_until(lambda: accepts(sock), f"{server.name} listening on {sock}")


class OvnControlPlane:
    """NB and SB ``ovsdb-server`` s and ``ovn-northd`` in ``workdir``; a context manager.

    The databases stay in ``workdir``: a second :meth:`start` (or :meth:`start_nb`) serves the same data on
    the same ports."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir).resolve()
        self.env = ovs_environment(self.workdir)
        self.nb_db, self.sb_db = self.workdir / "nb.db", self.workdir / "sb.db"
        self.nb_socket, self.sb_socket = self.workdir / "nb.sock", self.workdir / "sb.sock"
        if len(str(self.nb_socket)) > 100:  # sun_path holds 108 bytes
            raise ValueError(f"{self.workdir} is too long a path for unix sockets")
        self.nb_port = self.sb_port = 0  # chosen on the first start, then kept
        self._nb: Daemon | None = None
        self._sb: Daemon | None = None
        self._northd: Daemon | None = None
        self.timings: dict[str, float] = {}  # seconds: nb, sb, northd (until SB reflects NB), total

    # -- addresses ------------------------------------------------------------------------------------

    @property
    def nb_unix(self) -> str:
        return f"unix:{self.nb_socket}"

    @property
    def sb_unix(self) -> str:
        return f"unix:{self.sb_socket}"

    @property
    def nb_tcp(self) -> str:
        return self._tcp(self.nb_port)

    @property
    def sb_tcp(self) -> str:
        return self._tcp(self.sb_port)

    @staticmethod
    def _tcp(port: int) -> str:
        if not port:
            raise RuntimeError("the control plane has not been started")
        return f"tcp:127.0.0.1:{port}"

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> OvnControlPlane:
        """NB, ``ovn-nbctl init``, SB, northd (ready once ``--wait=sb sync`` returns); on failure stop all."""
        if self._nb is not None:
            raise RuntimeError("the control plane is already started")
        began = time.monotonic()
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._create(self.nb_db, OVN_SCHEMAS / "ovn-nb.ovsschema")
            self._create(self.sb_db, OVN_SCHEMAS / "ovn-sb.ovsschema")
            self.nb_port = self.nb_port or free_port()
            self.sb_port = self.sb_port or free_port()
            self._timed("nb", self.start_nb)
            with blamed_on(self._nb):
                self.nbctl("--no-wait", "init")
            self._timed("sb", self._start_sb)
            self._timed("northd", self._start_northd)
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - began
        return self

    def _timed(self, step: str, action: Callable[[], None]) -> None:
        began = time.monotonic()
        action()
        self.timings[step] = time.monotonic() - began

    def _create(self, db: Path, schema: Path) -> None:
        if not db.exists():
            run([program("ovsdb-tool"), "create", str(db), str(schema)], env=self.env)

    def _ovsdb_server(self, name: str, db: Path, sock: Path, port: int) -> Daemon:
        sock.unlink(missing_ok=True)  # left by a SIGKILL; readiness is "this socket accepts"
        return ovs_daemon(name, [program("ovsdb-server"), str(db), f"--remote=punix:{sock}",
                                 f"--remote=ptcp:{port}:127.0.0.1", f"--unixctl={self.workdir / name}.ctl"],
                          workdir=self.workdir, env=self.env)

    def start_nb(self) -> None:
        """Start the NB server on the same database file, socket and TCP port (after :meth:`stop_nb`)."""
        if self._nb is not None and self._nb.running():
            raise RuntimeError("NB is already running")
        self._nb = self._ovsdb_server("ovsdb-server-nb", self.nb_db, self.nb_socket, self.nb_port)
        wait_listening(self._nb, self.nb_socket)

    def stop_nb(self) -> None:
        """Stop the NB server by its PID; northd and clients keep trying to reconnect."""
        if self._nb is not None:
            self._nb.stop()

    def wipe_nb(self) -> None:
        """Stop NB, replace its database with an empty one, start it again."""
        self.stop_nb()
        self.nb_db.unlink()
        self._create(self.nb_db, OVN_SCHEMAS / "ovn-nb.ovsschema")
        self.start_nb()
        self.nbctl("--no-wait", "init")

    def _start_sb(self) -> None:
        self._sb = self._ovsdb_server("ovsdb-server-sb", self.sb_db, self.sb_socket, self.sb_port)
        wait_listening(self._sb, self.sb_socket)

    def _start_northd(self) -> None:
        self._northd = ovs_daemon("ovn-northd", [program("ovn-northd"), f"--ovnnb-db={self.nb_unix}",
                                                 f"--ovnsb-db={self.sb_unix}",
                                                 f"--unixctl={self.workdir / 'ovn-northd'}.ctl"],
                                  workdir=self.workdir, env=self.env)
        with blamed_on(self._northd):
            self.nbctl("--wait=sb", "sync", timeout=START_TIMEOUT)

    def stop(self) -> None:
        """northd, then NB and SB, each by its PID. Idempotent."""
        for daemon in (self._northd, self._nb, self._sb):
            if daemon is not None:
                daemon.stop()
        self._northd = self._nb = self._sb = None

    def pids(self) -> dict[str, int]:
        """The PIDs of the daemons running now, by name."""
        return {d.name: pid for d in (self._nb, self._sb, self._northd) if d and (pid := d.pid) is not None}

    def sb_running(self) -> bool:
        return self._sb is not None and self._sb.running()

    def __enter__(self) -> OvnControlPlane:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- clients --------------------------------------------------------------------------------------

    def nbctl(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """``ovn-nbctl`` on the NB socket (no wait unless ``--wait=…`` is passed); its stdout, stripped."""
        return self._ctl("ovn-nbctl", self.nb_unix, args, timeout)

    def sbctl(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        return self._ctl("ovn-sbctl", self.sb_unix, args, timeout)

    def _ctl(self, tool: str, db: str, args: Sequence[str], timeout: float) -> str:
        # --timeout bounds the wait for a server that is down; the subprocess timeout is a backstop.
        return run([program(tool), f"--db={db}", f"--timeout={max(1, round(timeout))}", *args],
                   env=self.env, timeout=timeout + 5)

    def log_tails(self, lines: int = 30) -> str:
        return "\n".join(d.tail(lines) for d in (self._nb, self._sb, self._northd) if d is not None)


@dataclass(frozen=True)
class Vm:
    """A network namespace with one end of a veth pair (``eth0``); the other end is on br-int."""

    name: str
    port_id: str  # the logical switch port it is bound to (a Neutron port's id)
    mac: str
    ip: str  # without the prefix length
    namespace: str
    device: str  # the veth end on br-int, in the chassis' namespace

    def exec(self, *cmd: str, check: bool = True,
             timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside the namespace; CommandError on failure if ``check``."""
        argv = ["ip", "netns", "exec", self.namespace, *cmd]
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise CommandError(f"{shlex.join(argv)} exited with {done.returncode}: {done.stderr.strip()}")
        return done

    def ping(self, ip: str, *, count: int = 1, timeout: float = 1.0) -> bool:
        """Whether ``ip`` answers at least one of ``count`` pings, each awaited ``timeout`` seconds."""
        done = self.exec("ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", f"{timeout:g}", ip,
                         check=False, timeout=count * (timeout + 0.2) + 5)
        return done.returncode == 0

    def wait_ping(self, ip: str, *, timeout: float = 10.0) -> bool:
        """Ping ``ip`` until it answers (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while not self.ping(ip, timeout=0.5):
            if time.monotonic() > deadline:
                return False
        return True


class OvnDataplane:
    """One chassis on the userspace datapath, registered in ``control``'s SB; a context manager."""

    def __init__(self, control: OvnControlPlane, workdir: Path, *, hostname: str | None = None) -> None:
        self.control = control
        self.workdir = Path(workdir).resolve()
        self.env = ovs_environment(self.workdir)
        self.db, self.db_socket = self.workdir / "conf.db", self.workdir / "db.sock"
        self._chassis = f"converge-test-chassis-{secrets.token_hex(4)}"
        self.hostname = hostname or self._chassis  # what options:requested-chassis may name
        self.namespace = f"cvg-{secrets.token_hex(4)}-hv"  # ovs-vswitchd's, and br-int's
        self._namespace_made = False
        self._ovsdb: Daemon | None = None
        self._vswitchd: Daemon | None = None
        self._controller: Daemon | None = None
        self._vms: dict[str, Vm] = {}
        self.timings: dict[str, float] = {}  # seconds: ovs (conf.db, vswitchd, br-int), chassis, total

    @property
    def chassis(self) -> str:
        """The chassis name (``system-id``) ovn-controller registers in SB."""
        return self._chassis

    @property
    def vms(self) -> list[Vm]:
        return list(self._vms.values())

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> OvnDataplane:
        """conf.db, ovs-vswitchd in its namespace, br-int, then ovn-controller until the chassis is in SB."""
        if self._ovsdb is not None:
            raise RuntimeError("the dataplane is already started")
        began = time.monotonic()
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._start_ovs()
            self.timings["ovs"] = time.monotonic() - began
            self._start_controller()
            self.timings["chassis"] = time.monotonic() - began - self.timings["ovs"]
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - began
        return self

    def _start_ovs(self) -> None:
        if not self.db.exists():
            run([program("ovsdb-tool"), "create", str(self.db), str(VSWITCH_SCHEMA)], env=self.env)
        self.db_socket.unlink(missing_ok=True)
        self._ovsdb = ovs_daemon("ovsdb-server", [program("ovsdb-server"), str(self.db),
                                                  f"--remote=punix:{self.db_socket}",
                                                  f"--unixctl={self.workdir / 'ovsdb-server'}.ctl"],
                                 workdir=self.workdir, env=self.env)
        wait_listening(self._ovsdb, self.db_socket)
        with blamed_on(self._ovsdb):
            self.vsctl("--no-wait", "init")
        run(["ip", "netns", "add", self.namespace])
        self._namespace_made = True
        run(["ip", "-n", self.namespace, "link", "set", "lo", "up"])
        self._vswitchd = ovs_daemon("ovs-vswitchd", [program("ovs-vswitchd"), f"unix:{self.db_socket}",
                                                     f"--unixctl={self.workdir / 'ovs-vswitchd'}.ctl"],
                                    workdir=self.workdir, env=self.env,
                                    prefix=["ip", "netns", "exec", self.namespace])
        with blamed_on(self._vswitchd):  # without --no-wait, ovs-vsctl returns once vswitchd made br-int
            self.vsctl("--may-exist", "add-br", "br-int", "--", "set", "Bridge", "br-int", "datapath_type=netdev",
                       "fail-mode=secure", "other-config:disable-in-band=true", timeout=START_TIMEOUT)

    def _start_controller(self) -> None:
        ids = {"system-id": self.chassis, "hostname": self.hostname, "ovn-remote": self.control.sb_unix,
               "ovn-encap-type": "geneve", "ovn-encap-ip": "127.0.0.1", "ovn-bridge": "br-int",
               "ovn-bridge-datapath-type": "netdev"}
        self.vsctl("set", "Open_vSwitch", ".", *(f"external_ids:{key}={json.dumps(value)}"
                                                  for key, value in ids.items()))
        self._controller = ovs_daemon("ovn-controller", [program("ovn-controller"), f"unix:{self.db_socket}"],
                                      workdir=self.workdir, env=self.env)  # 23.03 refuses --unixctl
        with blamed_on(self._controller):
            self._controller.wait_until(self._registered, f"chassis {self.chassis} in SB")

    def _registered(self) -> bool:
        return self.control.sbctl("--bare", "--columns=name", "find", "Chassis",
                                  f"name={json.dumps(self.chassis)}") == self.chassis

    def stop(self) -> None:
        """Every VM, ovn-controller (and its chassis row), ovs-vswitchd, the chassis' namespace (and so
        br-int, ovs-netdev and the veths' host ends), conf.db's server. Idempotent; runs every step even
        if one fails, then raises the first failure."""
        failures: list[BaseException] = []

        def attempt(step: Callable[[], object]) -> None:
            try:
                step()
            except Exception as failure:  # noqa: BLE001 - the rest of the teardown must still run
                failures.append(failure)

        for vm in list(self._vms.values()):
            attempt(functools.partial(self.remove_vm, vm))
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
            # A chassis that just stopped keeps its SB row, whose (geneve, 127.0.0.1) encap, unique in
            # SB, would keep the next dataplane on this control plane from registering.
            if self.control.sb_running():
                attempt(lambda: self.control.sbctl("--if-exists", "chassis-del", self.chassis, timeout=5))
        for daemon in (self._vswitchd, self._ovsdb):
            if daemon is not None:
                daemon.stop()
        self._vswitchd = self._ovsdb = None
        if self._namespace_made:
            attempt(lambda: run(["ip", "netns", "del", self.namespace]))
            self._namespace_made = False
        if failures:
            raise failures[0]

    def pids(self) -> dict[str, int]:
        """The PIDs of the daemons running now, by name."""
        daemons = (self._ovsdb, self._vswitchd, self._controller)
        return {d.name: pid for d in daemons if d and (pid := d.pid) is not None}

    def __enter__(self) -> OvnDataplane:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- VMs ------------------------------------------------------------------------------------------

    def add_vm(self, name: str, port_id: str, mac: str, cidr_ip: str, gateway: str | None = None) -> Vm:
        """A namespace whose ``eth0`` has ``mac`` and ``cidr_ip`` ("10.0.0.5/24"), a default route via
        ``gateway`` if given, plugged into br-int as the logical port ``port_id`` (``iface-id``)."""
        if name in self._vms:
            raise ValueError(f"a VM named {name!r} exists")
        if self._vswitchd is None:
            raise RuntimeError("the dataplane is not started")
        tag = secrets.token_hex(4)
        vm = Vm(name=name, port_id=port_id, mac=mac, ip=cidr_ip.split("/")[0], namespace=f"cvg-{tag}",
                device=f"cvg{tag}")
        self._vms[name] = vm  # first, so that stop() removes a half-made VM
        inside = ["ip", "-n", vm.namespace]
        run(["ip", "netns", "add", vm.namespace])
        run(["ip", "link", "add", vm.device, "netns", self.namespace, "type", "veth",
             "peer", "name", "eth0", "netns", vm.namespace])
        run([*inside, "link", "set", "eth0", "address", mac])
        run([*inside, "addr", "add", cidr_ip, "dev", "eth0"])
        run([*inside, "link", "set", "lo", "up"])
        run([*inside, "link", "set", "eth0", "up"])
        if gateway is not None:
            run([*inside, "route", "add", "default", "via", gateway])
        run(["ip", "-n", self.namespace, "link", "set", vm.device, "up"])
        if shutil.which("ethtool"):  # a userspace datapath does not fill in offloaded TCP/UDP checksums
            for namespace, device in ((vm.namespace, "eth0"), (self.namespace, vm.device)):
                run(["ip", "netns", "exec", namespace, "ethtool", "-K", device, "tx", "off"])
        with blamed_on(self._vswitchd):
            self.vsctl("add-port", "br-int", vm.device, "--", "set", "Interface", vm.device,
                       f"external_ids:iface-id={json.dumps(port_id)}")
        return vm

    def remove_vm(self, vm: Vm | str) -> None:
        """Unplug the VM from br-int and delete its namespace (and so its veth pair). Idempotent."""
        found = self._vms.pop(vm if isinstance(vm, str) else vm.name, None)
        if found is None:
            return
        vswitchd_up = self._vswitchd is not None and self._vswitchd.running()
        if self._ovsdb is not None and self._ovsdb.running():
            self.vsctl(*([] if vswitchd_up else ["--no-wait"]), "--if-exists", "del-port", "br-int", found.device)
        if found.namespace in run(["ip", "netns", "list"]).split():
            run(["ip", "netns", "del", found.namespace])

    def wait_bound(self, port_id: str, timeout: float = 10.0) -> None:
        """Until SB's Port_Binding of ``port_id`` names a chassis and NB's port is ``up``."""
        def bound() -> bool:
            binding = self.control.sbctl("--bare", "--columns=chassis", "find", "Port_Binding",
                                         f"logical_port={json.dumps(port_id)}")
            try:
                return bool(binding) and self.control.nbctl("get", "Logical_Switch_Port", port_id, "up") == "true"
            except CommandError:  # no such port (yet)
                return False

        deadline = time.monotonic() + timeout
        while not bound():
            if time.monotonic() > deadline:
                logs = self._controller.tail() if self._controller else ""
                raise TimeoutError(f"port {port_id} not bound within {timeout:.0f} s\n{logs}")
            time.sleep(0.05)

    def vsctl(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """``ovs-vsctl`` on this chassis' conf.db; its stdout, stripped."""
        return run([program("ovs-vsctl"), f"--db=unix:{self.db_socket}", f"--timeout={max(1, round(timeout))}",
                    *args], env=self.env, timeout=timeout + 5)

    def log_tails(self, lines: int = 30) -> str:
        daemons = (self._ovsdb, self._vswitchd, self._controller)
        return "\n".join(d.tail(lines) for d in daemons if d is not None)
