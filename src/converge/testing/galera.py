"""A throwaway Galera cluster for scale-out tests: N MariaDB nodes on 127.0.0.1, each in its own folder.

Why: Converge's workers and Neutron's API servers may each talk to a different node of a Galera cluster,
where two transactions touching one row on two nodes do not wait on each other's locks: the one certified
second is rolled back at commit (error 1213, which ``store.db`` translates to ``RaceLost``). That can only
be tested on a real cluster. :class:`GaleraCluster` starts node 1 with ``--wsrep-new-cluster``, joins the
others one at a time (a full state transfer by rsync into an empty datadir), and waits until each is
``Synced`` and sees all N; :meth:`~GaleraCluster.kill` SIGKILLs one node by its PID,
:meth:`~GaleraCluster.restart` brings it back (an incremental transfer from another node's gcache when its
position can be recovered, else a full one), :meth:`~GaleraCluster.stop` stops every node by its PID, node 1
last, and removes their datadirs. Each node is a :class:`~converge.testing.mariadb.MariaDB` with Galera's
options (:class:`GaleraNode`); ``scripts/setup`` installs ``galera-4`` and ``rsync``. Called by
``tests/functional/test_galera.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from converge.testing.mariadb import CLIENT, MARIADBD, MariaDB, free_port

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
START_TIMEOUT = 60.0  # a joiner's state transfer included
# Failure detection in seconds, not Galera's WAN-minded 5/15 s: on one host a node that stops answering is
# gone, and the survivors' commits wait until their new view excludes it.
EVS = ("evs.keepalive_period=PT0.5S;evs.inactive_check_period=PT0.5S;evs.suspect_timeout=PT2S;"
       "evs.inactive_timeout=PT4S;evs.install_timeout=PT4S")
# A joiner receives the rsync state transfer with an rsync daemon (started by Debian's wsrep_sst_rsync),
# and an rsync daemon started by root switches to the user nobody, who may neither write the datadir nor
# reach it under a private temporary folder (the servers run as root: user=root). So the nodes' transfer
# method is a script of ours, wsrep_sst_rsync_as_server in the node's bin/ on the server's PATH: it runs
# Debian's rsync method with bin/ first on PATH, where an rsync wrapper keeps the daemon's user. (An rsync
# wrapper alone would not be found first: mariadbd puts its own folders first on its children's PATH.)
SST_METHOD = "rsync_as_server"
WRAPPERS = {
    f"wsrep_sst_{SST_METHOD}": """#!/bin/sh
PATH="{bin}:$PATH" exec {sst} "$@"
""",
    "rsync": """#!/bin/sh
case " $* " in
  *" --daemon "*) [ "$(id -u)" = 0 ] && exec {rsync} "$@" --dparam=uid=root --dparam=gid=root ;;
esac
exec {rsync} "$@"
""",
}
_RECOVERED = re.compile(rb"WSREP: Recovered position: ([0-9a-f-]{36}:-?\d+)")


class GaleraError(RuntimeError):
    """A node did not reach ``Synced`` with the whole cluster in time; the message ends with its log tail."""


class GaleraNode(MariaDB):
    """One Galera node: MariaDB with the wsrep options; ready when ``Synced`` in a cluster of ``size``."""

    def __init__(self, workdir: Path, *, name: str, password: str, buffer_pool: str = "64M") -> None:
        super().__init__(workdir, durable=False, buffer_pool=buffer_pool, password=password)
        self.name = name
        self.gcomm_port, self.ist_port, self.sst_port = free_port(), free_port(), free_port()
        self.peers: list[str] = []  # every node's gcomm address, set by the cluster
        self.size = 1  # the cluster size to wait for
        self.bootstrapping = False  # starting a new cluster rather than joining one

    @property
    def gcomm(self) -> str:
        return f"127.0.0.1:{self.gcomm_port}"

    def options(self) -> list[str]:
        provider = f"base_port={self.gcomm_port};ist.recv_addr=127.0.0.1:{self.ist_port};gcache.size=32M;{EVS}"
        return [
            *super().options(),
            "innodb_log_file_size=16M",
            "binlog_format=ROW",
            "innodb_autoinc_lock_mode=2",
            "wsrep_on=ON",
            f"wsrep_provider={PROVIDER}",
            "wsrep_cluster_name=converge-test",
            f"wsrep_cluster_address=gcomm://{','.join(self.peers)}",
            f"wsrep_node_name={self.name}",
            f"wsrep_node_address={self.gcomm}",
            f'wsrep_provider_options="{provider}"',
            f"wsrep_sst_method={SST_METHOD}",
            f"wsrep_sst_receive_address=127.0.0.1:{self.sst_port}",
        ]

    def initialize(self) -> None:
        """A joiner's empty datadir is filled by the state transfer; only the bootstrap node needs tables.
        The transfer runs the wrappers in ``bin/`` (see :data:`WRAPPERS`)."""
        if self.bootstrapping:
            super().initialize()
        else:
            self.datadir.mkdir(parents=True, exist_ok=True)
        bin_ = self.workdir / "bin"
        bin_.mkdir(exist_ok=True)
        paths = {"bin": bin_, "sst": shutil.which("wsrep_sst_rsync") or "/usr/bin/wsrep_sst_rsync",
                 "rsync": shutil.which("rsync") or "/usr/bin/rsync"}
        for name, text in WRAPPERS.items():
            (bin_ / name).write_text(text.format(**paths))
            (bin_ / name).chmod(0o755)

    def environment(self) -> dict[str, str]:
        return os.environ | {"PATH": f"{self.workdir / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"}

    def ready(self) -> bool:
        if not self.socket.exists():
            return False
        state = self.status("wsrep_local_state_comment", "wsrep_cluster_size", "wsrep_ready")
        return (state.get("wsrep_local_state_comment") == "Synced" and state.get("wsrep_ready") == "ON"
                and state.get("wsrep_cluster_size") == str(self.size))

    def status(self, *names: str) -> dict[str, str]:
        """Global status variables by name (``{}`` while the server does not answer)."""
        wanted = ",".join(f"'{n}'" for n in names)
        done = subprocess.run([CLIENT, f"--socket={self.socket}", "-uroot", "-N", "-B", "-e",
                               f"SHOW GLOBAL STATUS WHERE Variable_name IN ({wanted})"],
                              capture_output=True, timeout=30, check=False)
        if done.returncode != 0:
            return {}
        pairs = (line.split("\t", 1) for line in done.stdout.decode().splitlines())
        return {name.lower(): value for name, value in pairs}

    def boot(self, *, bootstrap: bool = False) -> None:
        """Start: a new cluster (``bootstrap``), or join the running one, at the recovered position if any."""
        self.bootstrapping = bootstrap
        args = ["--wsrep-new-cluster"] if bootstrap else self.start_position()
        self.start(START_TIMEOUT, args=args)

    def start_position(self) -> list[str]:
        """After an unclean stop the datadir's ``grastate.dat`` says seqno -1: ``mariadbd --wsrep-recover``
        reads the last committed position from InnoDB (as Debian's ``galera_recovery`` does), so the node
        can ask for only what it missed (IST) instead of a whole copy (SST)."""
        if not (self.datadir / "mysql").exists():
            return []
        log = self.workdir / "recover.log"
        log.unlink(missing_ok=True)
        self.write_config()
        subprocess.run([MARIADBD, f"--defaults-file={self.config_file}", "--wsrep-recover",
                        f"--log-error={log}"], capture_output=True, timeout=60, check=False)
        found = _RECOVERED.search(log.read_bytes()) if log.exists() else None
        return [f"--wsrep-start-position={found.group(1).decode()}"] if found else []

    def kill(self) -> None:
        """SIGKILL, to its process group (its PID): an rsync of a state transfer goes with it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


class GaleraCluster:
    """``nodes`` Galera nodes under ``workdir`` (``node1`` … ``nodeN``), numbered from 1; a context manager."""

    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.workdir = Path(workdir).resolve()
        password = secrets.token_hex(12)  # one 'converge' user, replicated to every node
        self.nodes = [GaleraNode(self.workdir / f"node{n}", name=f"node{n}", password=password)
                      for n in range(1, nodes + 1)]
        for node in self.nodes:
            node.peers = [other.gcomm for other in self.nodes]
        self.timings: dict[str, float] = {}  # seconds: form, and restart of the last restarted node

    def node(self, number: int) -> GaleraNode:
        if not 1 <= number <= len(self.nodes):
            raise ValueError(f"no node {number}: nodes are 1 to {len(self.nodes)}")
        return self.nodes[number - 1]

    def url(self, node: int, database: str = "converge", *, causal: bool = False) -> str:
        """The database on one node. ``causal``: every read on its connections first waits until the node
        has applied what the cluster committed before it (``wsrep_sync_wait = 1``), so a read after a
        write through another node sees that write."""
        url = self.node(node).url(database)
        return f"{url}&init_command=SET%20SESSION%20wsrep_sync_wait%3D1" if causal else url

    @property
    def pids(self) -> dict[int, int]:
        """Node number → PID, for the nodes running."""
        return {n: node.pid for n, node in enumerate(self.nodes, 1)
                if node.process is not None and node.process.poll() is None}

    def conflicts(self) -> int:
        """Transactions the running nodes rolled back for a conflict with another node's, so far: local
        certification failures and brute-force aborts (a local transaction holding rows a replicated one
        needed), each seen by the client as error 1213."""
        return sum(int(value) for node in self.nodes if node.process is not None
                   for value in node.status("wsrep_local_cert_failures", "wsrep_local_bf_aborts").values())

    def start(self) -> GaleraCluster:
        """Bootstrap node 1, then join the others one at a time; each waits until Synced and sees the rest."""
        began = time.monotonic()
        try:
            for joined, node in enumerate(self.nodes, 1):
                node.size = joined
                node.boot(bootstrap=joined == 1)
        except BaseException:
            self.stop()
            raise
        self.wait_synced()
        self.timings["form"] = time.monotonic() - began
        return self

    def create_database(self, name: str = "converge") -> str:
        """(Re)create ``name`` through node 1 (DDL replicates); its URL on node 1."""
        return self.node(1).create_database(name)

    def kill(self, node: int) -> None:
        """SIGKILL one node by its PID; the others go on (with a majority) once they notice, a few seconds
        later (:meth:`wait_synced` returns when they have)."""
        self.node(node).kill()

    def restart(self, node: int) -> None:
        """Start a stopped or killed node again; it rejoins and is Synced with the whole cluster."""
        began = time.monotonic()
        target = self.node(node)
        target.size = len(self.pids) + 1
        target.boot()
        self.wait_synced()
        self.timings["restart"] = time.monotonic() - began

    def wait_synced(self, timeout: float = START_TIMEOUT) -> None:
        """Until every running node is Synced and sees all the running ones."""
        running = [n for n in self.nodes if n.process is not None and n.process.poll() is None]
        for node in running:
            node.size = len(running)
        deadline = time.monotonic() + timeout
        for node in running:
            while not node.ready():
                if time.monotonic() > deadline:
                    raise GaleraError(f"{node.name} not Synced in a cluster of {node.size} within {timeout:.0f} s: "
                                      f"{node.status('wsrep_local_state_comment', 'wsrep_cluster_size')}\n"
                                      f"{node.log_tail()}")
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop every node by its PID, node 1 last, then remove their datadirs."""
        try:
            for node in reversed(self.nodes):
                node.stop()
        finally:
            for node in self.nodes:
                if node.process is None:
                    shutil.rmtree(node.datadir, ignore_errors=True)

    def __enter__(self) -> GaleraCluster:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

