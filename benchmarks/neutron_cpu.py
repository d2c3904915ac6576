"""CPU seconds per port create, per process of a Neutron stack: where a driver's cost goes.

    .venv/bin/python benchmarks/neutron_cpu.py [--stacks converge-ovn,noop] [--ports 200] [--clients 4]

Each stack (Converge on OVN: ``converge`` + ``converge_router``, ``[converge] backend = ovn``, its sync
worker in ``neutron-periodic-workers``, OVN NB/SB/northd; or the no-op driver) is started on one MariaDB;
``--clients`` clients create ``--ports`` ports; the CPU time (user + system, from /proc) every process of
the stack used meanwhile is printed per process kind and per port. Everything is stopped by PID.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import machine  # noqa: E402

from converge.testing.mariadb import MariaDB  # noqa: E402
from converge.testing.neutron import NeutronStack, owned  # noqa: E402
from converge.testing.ovn import OvnControlPlane  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def descendants(pids: list[int]) -> set[int]:
    rows = [line.split() for line in subprocess.run(["ps", "-eo", "pid,ppid"], capture_output=True,
                                                     text=True).stdout.splitlines()[1:]]
    children: dict[int, list[int]] = {}
    for pid, parent in rows:
        children.setdefault(int(parent), []).append(int(pid))
    out, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        out.add(pid)
        todo += children.get(pid, [])
    return out


def kind_of(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return "?"
    if "periodic" in text or text.startswith("neutron-server"):  # oslo.service renames its children
        return "neutron-periodic-workers (sync worker)"
    program = Path(text.split()[0]).name if text.split() else "?"
    if program.startswith("python") and len(text.split()) > 1:
        program = Path(text.split()[1]).name
    return program


def cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def build(kind: str, work: Path, maria: MariaDB) -> tuple[NeutronStack, OvnControlPlane | None]:
    if kind == "converge-ovn":
        ovn = OvnControlPlane(work / "ovn").start()
        return NeutronStack(work / "neutron", mariadb=maria, mechanism_drivers=["converge"],
                            service_plugins=["converge_router"], tenant_network_type="geneve",
                            config={"converge": {"backend": "ovn", "ovn_nb_connection": ovn.nb_tcp}},
                            ml2_config={"ml2": {"extension_drivers": "port_security,converge"}}), ovn
    return NeutronStack(work / "neutron", mariadb=maria, mechanism_drivers=["converge_noop"],
                        service_plugins=["router"], tenant_network_type="geneve", periodic_workers=False), None


def measure(kind: str, work: Path, maria: MariaDB, ports: int, clients: int) -> None:
    stack, ovn = build(kind, work, maria)
    stack.start()
    try:
        cloud = stack.connection()
        net = cloud.network.create_network(**owned("p1", name="n"))
        cloud.network.create_subnet(**owned("p1", network_id=net.id, cidr="10.9.0.0/20", ip_version=4))
        for i in range(10):  # warm-up
            cloud.network.create_port(**owned("p1", network_id=net.id, name=f"w{i}", binding_host_id="compute-1"))
        time.sleep(3)
        roots = [p for p in [stack._api.pid if stack._api else 0, stack._periodic.pid if stack._periodic else 0,
                             maria.pid, *(ovn.pids().values() if ovn else [])] if p]
        before = {p: cpu(p) for p in descendants(roots)}
        began = time.monotonic()

        def client(c: int) -> None:
            conn = stack.connection()
            for i in range(ports // clients):
                conn.network.create_port(**owned("p1", network_id=net.id, name=f"c{c}-{i}",
                                                 binding_host_id="compute-1"))

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - began
        time.sleep(3)  # the sync side finishes what the creates started
        by_kind: dict[str, float] = {}
        for pid in descendants(roots):
            by_kind[kind_of(pid)] = by_kind.get(kind_of(pid), 0.0) + cpu(pid) - before.get(pid, 0.0)
        made = (ports // clients) * clients
        print(f"\n== {kind}: {made} ports by {clients} clients in {wall:.1f} s ({time.strftime('%Y-%m-%d %H:%M')}, "
              f"{machine()})")
        for name, seconds in sorted(by_kind.items(), key=lambda kv: -kv[1]):
            if seconds >= 0.05:
                print(f"  {name:28s} {seconds:7.2f} s CPU  {seconds / made * 1000:6.1f} ms/port")
    finally:
        stack.stop()
        if ovn is not None:
            ovn.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stacks", default="converge-ovn,noop")
    ap.add_argument("--ports", type=int, default=200)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="converge-cpu-") as tmp:
        maria = MariaDB(Path(tmp) / "mariadb")
        maria.start()
        try:
            for kind in args.stacks.split(","):
                measure(kind, Path(tmp) / kind, maria, args.ports, args.clients)
        finally:
            maria.stop()


if __name__ == "__main__":
    main()
