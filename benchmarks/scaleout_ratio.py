"""Port create through Neutron on Galera with two API servers: Converge vs a no-op driver, 4 clients.

Two scale-out stacks share one 3-node Galera cluster (``converge.testing.scaleout``): Converge's (two API
servers, each on its own node with its periodic workers and sync worker, a standalone agent on the third
node, the fabric controller) and the baseline's (the same two API servers with the no-op driver
``converge_noop``, nothing else). ``--clients`` clients each create ``--burst`` ports at once on one stack,
then on the other (which goes first alternates per round), every client alternating between that stack's
two API servers per call, as a load balancer would. Printed: the ratio of median latencies, ports/s of
each, the CPU per port of each stack's API servers and of Converge's sync side (periodic workers, agent,
controller) from /proc, and the operations the controller applied per port (a resync would show).

    .venv/bin/python benchmarks/scaleout_ratio.py [--ports 400] [--clients 4] [--burst 5]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from common import concurrently, cpu, descendants, report  # noqa: E402

from converge.testing.galera import GaleraCluster  # noqa: E402
from converge.testing.neutron import owned  # noqa: E402
from converge.testing.scaleout import ScaleOut  # noqa: E402


def cpu_seconds(pids: set[int]) -> float:
    return sum(cpu(pid) for pid in pids)


def groups(stack: ScaleOut) -> dict[str, set[int]]:
    pids = stack.pids()
    return {"api": descendants([p for name, p in pids.items() if name.startswith("api")]),
            "sync": descendants([p for name, p in pids.items()
                                 if name.startswith("periodic") or name in ("agent", "fabric")])}


class Clients:
    """``n`` clients on one stack, each alternating between its API servers per call."""

    def __init__(self, stack: ScaleOut, n: int, net: str) -> None:
        self.net = net
        self.cycles = [itertools.cycle([s.connection() for s in stack.stacks]) for _ in range(n)]

    def burst(self, per_client: int) -> list[float]:
        took: list[float] = []

        def run(cycle: Any) -> None:
            for _ in range(per_client):
                began = time.monotonic()
                next(cycle).network.create_port(**owned("bench", network_id=self.net, binding_host_id="bench-host"))
                took.append(time.monotonic() - began)  # list.append is atomic

        concurrently(run, self.cycles)
        return took


def network(stack: ScaleOut) -> str:
    cloud = stack.stacks[0].connection()
    net = cloud.network.create_network(**owned("bench", name="bench"))
    cloud.network.create_subnet(**owned("bench", network_id=net.id, ip_version=4, cidr="10.0.0.0/16"))
    return str(net.id)


def main() -> None:

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ports", type=int, default=400, help="ports per stack")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--burst", type=int, default=5, help="ports per client per burst")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="converge-ratio-") as tmp:
        work = Path(tmp)
        with GaleraCluster(work / "galera") as cluster, \
                ScaleOut(work / "converge", galera=cluster, database="neutron", lease_duration=15.0,
                         sweep_interval=5.0) as converge, \
                ScaleOut(work / "baseline", galera=cluster, database="neutron_noop", baseline=True) as baseline:
            nets = network(converge), network(baseline)
            clients = Clients(converge, args.clients, nets[0]), Clients(baseline, args.clients, nets[1])
            for c in clients:
                c.burst(3)  # warm every API worker's caches
            time.sleep(5)
            pids = groups(converge), groups(baseline)
            galera = descendants(list(cluster.pids.values()))
            cpu_before = ({k: cpu_seconds(v) for k, v in pids[0].items()},
                          {k: cpu_seconds(v) for k, v in pids[1].items()}, cpu_seconds(galera))
            audit_from = converge.fabric.audit()[-1]["seq"]
            lat: tuple[list[float], list[float]] = ([], [])
            busy = [0.0, 0.0]
            rounds = -(-args.ports // (args.clients * args.burst))
            load = Path("/proc/loadavg").read_text().split()[0]
            for r in range(rounds):
                for i in ((0, 1) if r % 2 == 0 else (1, 0)):
                    began = time.monotonic()
                    lat[i].extend(clients[i].burst(args.burst))
                    busy[i] += time.monotonic() - began
            settle_began = time.monotonic()
            while converge.fabric.audit(after=audit_from) and time.monotonic() - settle_began < 60:
                before = len(converge.fabric.audit(after=audit_from))
                time.sleep(2)
                if len(converge.fabric.audit(after=audit_from)) == before:
                    break
            cpu_after = ({k: cpu_seconds(v) for k, v in pids[0].items()},
                         {k: cpu_seconds(v) for k, v in pids[1].items()}, cpu_seconds(galera))
            applied = sum(int(e["operations"]) for e in converge.fabric.audit(after=audit_from) if e["status"] == 200)
            n = len(lat[0]), len(lat[1])
            m = statistics.median(lat[0]), statistics.median(lat[1])

            def per_port(i: int, kind: str) -> str:
                return f"{1000 * (cpu_after[i][kind] - cpu_before[i][kind]) / n[i]:.1f} ms"

            report("port create on Galera, two API servers, converge vs no-op", {
                "clients / ports per stack": f"{args.clients} / {n[0]}",
                "median converge / no-op": f"{1000 * m[0]:.0f} / {1000 * m[1]:.0f} ms",
                "ratio (target ≤ 1.10)": f"{m[0] / m[1]:.3f}",
                "p99 converge / no-op": f"{1000 * sorted(lat[0])[int(0.99 * (n[0] - 1))]:.0f} / "
                                        f"{1000 * sorted(lat[1])[int(0.99 * (n[1] - 1))]:.0f} ms",
                "ports/s converge / no-op": f"{n[0] / busy[0]:.1f} / {n[1] / busy[1]:.1f}",
                "CPU per port, API servers converge / no-op": f"{per_port(0, 'api')} / {per_port(1, 'api')}",
                "CPU per port, Converge's sync side (periodic workers, agent, controller)": per_port(0, "sync"),
                "CPU per port, Galera (both stacks)": f"{1000 * (cpu_after[2] - cpu_before[2]) / sum(n):.1f} ms",
                "operations applied / ports created": f"{applied} / {n[0]}",
                "load average at the start": load,
            })


if __name__ == "__main__":
    main()
