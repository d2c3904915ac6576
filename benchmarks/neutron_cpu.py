"""CPU seconds per port create, per process of a Neutron stack: where a driver's cost goes.

    .venv/bin/python benchmarks/neutron_cpu.py [--stacks converge-ovn,converge-fabric,noop] [--ports 200] \
        [--clients 4]

Each stack is started on one MariaDB: Converge on OVN (``converge`` + ``converge_router``, ``[converge]
backend = ovn``, its sync worker in ``neutron-periodic-workers``, OVN NB/SB/northd; no chassis, so its
ports stay DOWN), Converge on the fabric controller (the same with ``backend = fabric`` and the controller
as a process, as benchmarks/neutron.py runs it: the controller reports each port up 0.5 s after it
arrives, and the sync worker's process then turns it ACTIVE through Neutron), or the no-op driver.
``--clients`` clients create ``--ports`` ports; the CPU time (user + system, from /proc) every process of
the stack used meanwhile, until the sync side is idle again, is printed per process kind and per port —
also above idle: less what the process used in 5 s of doing nothing before, scaled to the window (the
sync worker polls its journal every 50 ms whatever happens, so on a loaded machine, where the window
stretches, the raw figure grows with it) — with how many of the ports ended ACTIVE, the whole machine's
busy CPU (others' load shows there) and MariaDB's statements per port. Everything is stopped by PID.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import TICK, concurrently, cpu, descendants, machine  # noqa: E402

from converge.testing.fabric import FabricProcess  # noqa: E402
from converge.testing.mariadb import MariaDB  # noqa: E402
from converge.testing.neutron import NeutronStack, owned  # noqa: E402
from converge.testing.ovn import OvnControlPlane  # noqa: E402


def kind_of(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return "?"
    if "periodic" in text or text.startswith("neutron-server"):  # oslo.service renames its children
        return "neutron-periodic-workers (sync worker)"
    if "converge.fabric" in text:
        return "fabric controller"
    program = Path(text.split()[0]).name if text.split() else "?"
    if program.startswith("python") and len(text.split()) > 1:
        program = Path(text.split()[1]).name
    return program


Controller = OvnControlPlane | FabricProcess


def build(kind: str, work: Path, maria: MariaDB) -> tuple[NeutronStack, Controller | None]:
    ml2 = {"ml2": {"extension_drivers": "port_security,converge"}}
    if kind == "converge-ovn":
        ovn = OvnControlPlane(work / "ovn").start()
        return NeutronStack(work / "neutron", mariadb=maria, mechanism_drivers=["converge"],
                            service_plugins=["converge_router"], tenant_network_type="geneve",
                            config={"converge": {"backend": "ovn", "ovn_nb_connection": ovn.nb_tcp}},
                            ml2_config=ml2), ovn
    if kind == "converge-fabric":
        fabric = FabricProcess(work / "fabric", faults=False).start()
        return NeutronStack(work / "neutron", mariadb=maria, mechanism_drivers=["converge"],
                            service_plugins=["converge_router"], tenant_network_type="geneve",
                            config={"converge": {"controller_urls": fabric.url, "token": fabric.token}},
                            ml2_config=ml2), fabric
    if kind != "noop":
        raise SystemExit(f"unknown stack {kind!r}: converge-ovn, converge-fabric or noop")
    return NeutronStack(work / "neutron", mariadb=maria, mechanism_drivers=["converge_noop"],
                        service_plugins=["router"], tenant_network_type="geneve", periodic_workers=False), None


def controller_pids(controller: Controller | None) -> list[int]:
    if isinstance(controller, OvnControlPlane):
        return list(controller.pids().values())
    if isinstance(controller, FabricProcess):
        return [controller.pid]
    return []


STATUS = ("Questions", "Com_commit", "Innodb_row_lock_waits", "Innodb_row_lock_time")


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (every process, every core), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK  # all but idle and iowait


def db_status(maria: MariaDB) -> dict[str, int]:
    """MariaDB's server-wide counters: statements, commits, row lock waits and their total ms."""
    names = ",".join(f"'{n}'" for n in STATUS)
    out = maria.sql(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})").stdout.decode()
    return {name: int(value) for name, value in (line.split("\t") for line in out.splitlines()[1:])}


IDLE_WINDOW = 5.0


def per_kind(roots: list[int], seconds: float) -> dict[str, float]:
    """CPU seconds each kind of process of the stack uses over ``seconds`` of doing nothing."""
    before = {p: cpu(p) for p in descendants(roots)}
    time.sleep(seconds)
    used: dict[str, float] = {}
    for pid in descendants(roots):
        used[kind_of(pid)] = used.get(kind_of(pid), 0.0) + cpu(pid) - before.get(pid, 0.0)
    return used


def settle(pids: set[int], *, quiet: float = 0.1, window: float = 1.0, limit: float = 60.0) -> None:
    """Wait (at least 3 s) until the stack's processes together use less than ``quiet`` of a core over
    ``window`` seconds: the sync side has finished what the creates started (pushes, ports turned ACTIVE)."""
    time.sleep(3)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = sum(cpu(p) for p in pids)
        time.sleep(window)
        if sum(cpu(p) for p in pids) - before < quiet * window:
            return


def measure(kind: str, work: Path, maria: MariaDB, ports: int, clients: int) -> None:
    stack, controller = build(kind, work, maria)
    stack.start()
    try:
        cloud = stack.connection()
        net = cloud.network.create_network(**owned("p1", name="n"))
        cloud.network.create_subnet(**owned("p1", network_id=net.id, cidr="10.9.0.0/20", ip_version=4))
        for i in range(10):  # warm-up
            cloud.network.create_port(**owned("p1", network_id=net.id, name=f"w{i}", binding_host_id="compute-1"))
        time.sleep(3)
        roots = [p for p in [stack._api.pid if stack._api else 0, stack._periodic.pid if stack._periodic else 0,
                             maria.pid, *controller_pids(controller)] if p]
        idle = per_kind(roots, IDLE_WINDOW)  # what the stack spends doing nothing: polls, sweeps
        before = {p: cpu(p) for p in descendants(roots)}
        counters = db_status(maria)
        busy = machine_busy()
        began = time.monotonic()

        def client(c: int) -> None:
            conn = stack.connection()
            for i in range(ports // clients):
                conn.network.create_port(**owned("p1", network_id=net.id, name=f"c{c}-{i}",
                                                 binding_host_id="compute-1"))

        concurrently(client, range(clients))
        wall = time.monotonic() - began
        settle(descendants(roots))
        window = time.monotonic() - began
        counted = {name: value - counters[name] for name, value in db_status(maria).items()}
        busy = machine_busy() - busy
        by_kind: dict[str, float] = {}
        for pid in descendants(roots):
            by_kind[kind_of(pid)] = by_kind.get(kind_of(pid), 0.0) + cpu(pid) - before.get(pid, 0.0)
        made = (ports // clients) * clients
        statuses = [p.status for p in cloud.network.ports(network_id=net.id)]
        load = Path("/proc/loadavg").read_text().split()[:3]
        print(f"\n== {kind}: {made} ports by {clients} clients in {wall:.1f} s ({time.strftime('%Y-%m-%d %H:%M')}, "
              f"{machine()}; load average {' '.join(load)}); ACTIVE: {statuses.count('ACTIVE')} of {len(statuses)}")
        print(f"  {'process':40s} {'CPU':>9s} {'per port':>10s}  above idle ({IDLE_WINDOW:.0f} s measured before, "
              f"scaled to the {window:.1f} s window)")
        for name, seconds in sorted(by_kind.items(), key=lambda kv: -kv[1]):
            if seconds >= 0.05:
                above = seconds - idle.get(name, 0.0) / IDLE_WINDOW * window
                print(f"  {name:40s} {seconds:7.2f} s {seconds / made * 1000:7.1f} ms  {above / made * 1000:7.1f} ms")
        ours = sum(by_kind.values())
        print(f"  the stack {ours:.1f} s CPU, the whole machine {busy:.1f} s (this benchmark's clients and anything "
              f"else running: {busy - ours:.1f} s)")
        print(f"  MariaDB: {counted['Questions'] / made:.1f} statements and {counted['Com_commit'] / made:.1f} "
              f"commits per port, {counted['Innodb_row_lock_waits']} row lock waits "
              f"({counted['Innodb_row_lock_time']} ms in all)")
    finally:
        stack.stop()
        if controller is not None:
            controller.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stacks", default="converge-ovn,converge-fabric,noop")
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
