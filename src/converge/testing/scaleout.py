"""A scale-out Neutron with Converge on one machine: what an operator runs, made small.

- a 3-node Galera cluster (``converge.testing.galera``) on 127.0.0.1;
- two Neutron API servers under uWSGI, each on its own node (clients alternate between them, the way a
  load balancer would), each with its ``neutron-periodic-workers`` running Converge's sync worker;
- one standalone agent (``converge sync run --config-file …``) on the third node;
- the controller: the fabric controller (faults on), or OVN's NB/SB/northd (``backend="ovn"``).

Everything listens on 127.0.0.1 and is stopped by its PID. ``benchmarks/chaos.py`` drives a workload and
faults through it; ``tests/functional/test_chaos.py`` runs a subset in CI.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from converge.testing.fabric import FabricProcess
from converge.testing.galera import GaleraCluster
from converge.testing.neutron import NeutronStack
from converge.testing.ovn import OvnControlPlane
from converge.testing.processes import Daemon

DATABASE = "neutron"


class ScaleOut:
    """``baseline=True``: the same two API servers with the no-op mechanism driver (``converge_noop``) and
    no L3 plugin of Converge's, no sync worker, no agent, no controller — what a benchmark compares with.
    ``galera``: share a running cluster (each ScaleOut then needs its own ``database``); it is not stopped."""

    def __init__(self, workdir: Path, *, lease_duration: float = 6.0, sweep_interval: float = 2.0,
                 api_processes: int = 2, baseline: bool = False, galera: GaleraCluster | None = None,
                 database: str = DATABASE, backend: str = "fabric") -> None:
        self.workdir = Path(workdir).resolve()
        self._own_galera = galera is None
        self.galera = galera or GaleraCluster(self.workdir / "galera", nodes=3)
        self.baseline = baseline
        self.backend = backend
        self.fabric = FabricProcess(self.workdir / "fabric", faults=True)
        self.ovn = OvnControlPlane(self.workdir / "ovn") if backend == "ovn" else None
        self.database = database
        self.lease_duration = lease_duration
        self.sweep_interval = sweep_interval
        self.api_processes = api_processes
        self.stacks: list[NeutronStack] = []
        self.agent: Daemon | None = None

    def _stack(self, n: int) -> NeutronStack:
        common: dict[str, Any] = {"mariadb": self.galera.node(n), "database": self.database,
                                  "new_database": n == 1, "processes": self.api_processes}
        if self.baseline:
            return NeutronStack(self.workdir / f"neutron{n}", mechanism_drivers=["converge_noop"],
                                periodic_workers=False, **common)
        converge: dict[str, object] = {"sweep_interval": self.sweep_interval, "poll_interval": 0.05,
                                       "lease_duration": self.lease_duration}
        if self.ovn is not None:
            converge |= {"backend": "ovn", "ovn_nb_connection": self.ovn.nb_tcp}
            common["tenant_network_type"] = "geneve"
        else:
            converge |= {"controller_urls": self.fabric.url, "token": self.fabric.token}
        return NeutronStack(self.workdir / f"neutron{n}", mechanism_drivers=["converge"],
                            service_plugins=["converge_router"], config={"converge": converge},
                            ml2_config={"ml2": {"extension_drivers": "port_security,converge"}}, **common)

    def start(self) -> ScaleOut:
        try:
            if self.ovn is not None:
                self.ovn.start()
            elif not self.baseline:
                self.fabric.start()
            if self._own_galera:
                self.galera.start()
            for n in (1, 2):
                stack = self._stack(n)
                self.stacks.append(stack)
                stack.start()
            if not self.baseline:
                self.start_agent()
        except BaseException:
            self.stop()
            raise
        return self

    def agent_config(self) -> Path:
        """The first stack's ``neutron.conf`` with the third node as its database."""
        first = self.stacks[0]
        text = first.neutron_conf.read_text().replace(self.galera.node(1).url(self.database),
                                                      self.galera.node(3).url(self.database))
        path = self.workdir / "agent-neutron.conf"
        path.write_text(text)
        return path

    def start_agent(self) -> None:
        conf = self.agent_config()
        argv = [sys.executable, "-m", "converge.cli.main", "sync", "run", "--config-file", str(conf),
                "--config-file", str(self.stacks[0].ml2_conf), "--lease-duration", str(self.lease_duration),
                "--sweep-interval", str(self.sweep_interval)]
        self.agent = Daemon("agent", argv, log=self.workdir / "agent.log", env=self.stacks[0].env())
        self.agent.start()

    @property
    def urls(self) -> list[str]:
        return [stack.url for stack in self.stacks]

    def connections(self) -> list[Any]:
        """One openstacksdk connection per API server."""
        return [stack.connection() for stack in self.stacks]

    def database_url(self, node: int = 1) -> str:
        return self.galera.url(node, self.database)

    def kill_api(self, n: int) -> None:
        """kill -9 of API server ``n``'s uWSGI master (its workers follow: no-orphans)."""
        process = self.stacks[n - 1]._api
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(30)

    def restart_api(self, n: int) -> None:
        self.stacks[n - 1].restart_api()

    def pids(self) -> dict[str, int]:
        out = {f"galera{n}": pid for n, pid in self.galera.pids.items()}
        for n, stack in enumerate(self.stacks, 1):
            for name, process in (("api", stack._api), ("periodic", stack._periodic)):
                if process is not None and process.poll() is None:
                    out[f"{name}{n}"] = process.pid
        if self.agent is not None and self.agent.pid is not None:
            out["agent"] = self.agent.pid
        if self.fabric.running():
            out["fabric"] = self.fabric.pid
        if self.ovn is not None:
            out |= {f"ovn-{name}": pid for name, pid in self.ovn.pids().items()}
        return out

    def stop(self) -> None:
        """Agent, API servers and periodic workers, the controller, then the cluster (node 1 last)."""
        try:
            if self.agent is not None:
                self.agent.stop()
            for stack in self.stacks:
                stack.stop()
            self.fabric.stop()
            if self.ovn is not None:
                self.ovn.stop()
        finally:
            if self._own_galera:
                self.galera.stop()

    def __enter__(self) -> ScaleOut:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
