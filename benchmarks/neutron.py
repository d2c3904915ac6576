"""Converge inside the real Neutron API (MariaDB, uWSGI, periodic workers, a fabric controller):

1. port-create latency with ``converge`` vs a no-op mechanism driver (``converge_noop``), two stacks on
   one MariaDB, creates interleaved one by one so both see the same machine load; the ratio of medians.
   ``--clients 4`` interleaves bursts instead: per round, 4 clients each create ``--burst`` ports on
   one stack, then on the other (the order decided as below);
   ``--order alternate`` (the default) creates with converge first in every pair; ``--order shuffled``
   flips a seeded coin per pair. Why the choice matters: the converge stack does work at a fixed delay
   after each create (the controller reports the port up 0.5 s after it arrives, and Neutron then turns
   it ACTIVE in the sync worker's process: about 40 ms of CPU, Neutron's own update). With a fixed order
   that work lands at the same point of every pair, so which stack's creates it slows depends on how
   long a pair takes on this machine (seen: when a pair took about 0.33 s, 73 % of it ran during
   converge creates, against 54 %, their share of the time, with shuffled pairs). The converge stack
   also runs what the baseline has no counterpart for: the periodic-workers process (the sync worker,
   its port-status listener and those ACTIVE updates; the baseline's ports stay DOWN) and the
   controller;
2. API commit → controller: after each port create answered 201, poll the controller until it holds the
   port (5 ms polls), sequentially;
3. ``converge adopt`` of N existing ports (made through the bulk API on a stack without Converge).

    .venv/bin/python benchmarks/neutron.py --ports 200 --adopt-ports 10000
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import httpx  # noqa: E402
from common import concurrently, percentile, report  # noqa: E402

from converge.testing.fabric import FabricProcess  # noqa: E402
from converge.testing.mariadb import MariaDB  # noqa: E402
from converge.testing.neutron import NeutronStack, owned  # noqa: E402

ML2 = {"ml2": {"extension_drivers": "port_security,converge"}}


def mac(n: int) -> str:
    return "fa:16:3f:" + ":".join(f"{(n >> shift) & 0xFF:02x}" for shift in (16, 8, 0))


def network(cloud, project: str, cidr: str) -> str:
    net = cloud.network.create_network(**owned(project, name="bench"))
    cloud.network.create_subnet(**owned(project, network_id=net.id, cidr=cidr, ip_version=4))
    return str(net.id)


def create_port(cloud, project: str, net: str) -> tuple[str, float]:
    began = time.monotonic()
    port = cloud.network.create_port(**owned(project, network_id=net, binding_host_id="compute-1"))
    return str(port.id), time.monotonic() - began


def burst(clouds: list, net: str, per_client: int) -> list[float]:
    """Each cloud (one per client) creates ``per_client`` ports, all clients at once; their latencies."""
    took: list[float] = []  # list.append is atomic
    concurrently(lambda cloud: took.extend(create_port(cloud, "bench", net)[1] for _ in range(per_client)), clouds)
    return took


def latency(work: Path, maria: MariaDB, fabric: FabricProcess, conf: dict, args: argparse.Namespace) -> None:
    if args.api_path_only:
        conf = {"converge": {**conf["converge"], "sync_workers": 0}}
    with NeutronStack(work / "with", mariadb=maria, mechanism_drivers=["converge"], config=conf,
                      ml2_config=ML2) as with_converge, \
            NeutronStack(work / "without", mariadb=maria, mechanism_drivers=["converge_noop"],
                         periodic_workers=False) as baseline:
        a, b = with_converge.connection(), baseline.connection()
        net_a, net_b = network(a, "bench", "10.0.0.0/20"), network(b, "bench", "10.0.0.0/20")
        for _ in range(10):  # warm both: the first calls of a worker load caches
            create_port(a, "bench", net_a), create_port(b, "bench", net_b)
        # One connection per client: an openstacksdk connection is not for several threads at once.
        clouds_a = [a] + [with_converge.connection() for _ in range(args.clients - 1)]
        clouds_b = [b] + [baseline.connection() for _ in range(args.clients - 1)]
        per_client = 1 if args.clients == 1 else args.burst
        lat_a, lat_b = [], []
        coin = random.Random(args.seed)
        load_before = Path("/proc/loadavg").read_text().split()[0]
        for _ in range(-(-args.ports // (args.clients * per_client))):
            converge_first = args.order == "alternate" or coin.random() < 0.5
            if not converge_first:
                lat_b += burst(clouds_b, net_b, per_client)
            lat_a += burst(clouds_a, net_a, per_client)
            if converge_first:
                lat_b += burst(clouds_b, net_b, per_client)
        load_after = Path("/proc/loadavg").read_text().split()[0]
        ratio = statistics.median(lat_a) / statistics.median(lat_b)

        lag = [float("nan")]  # not measured without a sync worker
        if not args.api_path_only:
            http = httpx.Client(headers=fabric.headers())
            lag_net = network(a, "lag", "10.1.0.0/24")
            lag = []
            for _ in range(100):
                port, _ = create_port(a, "lag", lag_net)
                answered = time.monotonic()
                while http.get(f"{fabric.url}/v1/roots/lag/objects/port/{port}").status_code != 200:
                    time.sleep(0.005)
                lag.append(time.monotonic() - answered)
            http.close()
        report("Neutron port create: converge vs no-op driver", {
            "ports (each stack, interleaved)": len(lat_a),
            "clients": "1 (one create per stack in turn)" if args.clients == 1 else
                       f"{args.clients} concurrent, bursts of {args.clients} x {per_client} creates per stack",
            "load average (1 min) before / after": f"{load_before} / {load_after}",
            "order in each pair": "converge first" if args.order == "alternate"
                                  else f"seeded coin flip (seed {args.seed})",
            "median with converge": f"{statistics.median(lat_a) * 1000:.1f} ms",
            "median with no-op driver": f"{statistics.median(lat_b) * 1000:.1f} ms",
            "p90 with converge / no-op": f"{percentile(lat_a, 90) * 1000:.1f} / "
                                         f"{percentile(lat_b, 90) * 1000:.1f} ms",
            "ratio of medians": f"{ratio:.3f}",
            "API 201 -> on controller p50": f"{percentile(lag, 50) * 1000:.1f} ms",
            "API 201 -> on controller p99": f"{percentile(lag, 99) * 1000:.1f} ms",
        })



def adopt(work: Path, maria: MariaDB, conf: dict, args: argparse.Namespace) -> None:
    with NeutronStack(work / "adopt", mariadb=maria, mechanism_drivers=["converge_noop"],
                      periodic_workers=False,
                      config={**conf, "quotas": {"quota_port": -1, "quota_network": -1, "quota_subnet": -1}}) as old:
        cloud = old.connection()
        made, began = 0, time.monotonic()
        while made < args.adopt_ports:
            project = f"old-{made // 1000}"
            net = network(cloud, project, "10.0.0.0/18")
            batch = min(1000, args.adopt_ports - made)
            for i in range(0, batch, 250):
                n = min(250, batch - i)
                # Explicit MACs: Neutron's generated ones collided now and then in big bulk creates.
                answer = cloud.network.post("/ports", json={"ports": [
                    owned(project, network_id=net, mac_address=mac(made + i + k)) for k in range(n)]})
                if answer.status_code != 201:
                    raise SystemExit(f"bulk port create: HTTP {answer.status_code} {answer.text}")
            made += batch
        created = time.monotonic() - began
        config = [a for p in old.config_files for a in ("--config-file", str(p))]
        began = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "converge.cli.main", "adopt", *config,
                               "--neutron-url", old.url, "--json"], capture_output=True, text=True)
        took = time.monotonic() - began
        summary = json.loads(done.stdout)
        began = time.monotonic()
        again = subprocess.run([sys.executable, "-m", "converge.cli.main", "adopt", *config,
                                "--neutron-url", old.url, "--json"], capture_output=True, text=True)
        took_again = time.monotonic() - began
        report("converge adopt", {
            "ports made (bulk API, no Converge)": f"{made} in {created:.0f} s",
            "resources adopted": summary["recorded"], "adopt time": f"{took:.1f} s",
            "second run (nothing to do)": f"{json.loads(again.stdout)['recorded']} recorded in "
                                          f"{took_again:.1f} s"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ports", type=int, default=200)
    ap.add_argument("--adopt-ports", type=int, default=10_000)
    ap.add_argument("--only", choices=["latency", "adopt"], help="run one part")
    ap.add_argument("--order", choices=["alternate", "shuffled"], default="alternate",
                    help="which stack creates first in each pair: always converge (default) or a seeded coin flip")
    ap.add_argument("--seed", type=int, default=2026, help="seed of the coin flips of --order shuffled")
    ap.add_argument("--clients", type=int, default=1,
                    help="concurrent clients per stack: 1 (default) creates one port per stack in turn; more "
                         "runs rounds of one burst per stack, each client creating --burst ports")
    ap.add_argument("--burst", type=int, default=5, help="creates per client per burst (with --clients > 1)")
    ap.add_argument("--api-path-only", action="store_true",
                    help="no sync worker in the converge stack: compare the API path alone (skips the lag part)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="converge-bench-") as tmp:
        work = Path(tmp)
        maria = MariaDB(work / "mariadb")
        maria.start()
        try:
            with FabricProcess(work / "fabric", faults=False) as fabric:
                conf = {"converge": {"controller_urls": fabric.url, "token": fabric.token}}
                if args.only in (None, "latency"):
                    latency(work, maria, fabric, conf, args)
                if args.only in (None, "adopt"):
                    adopt(work, maria, conf, args)
        finally:
            maria.stop()


if __name__ == "__main__":
    main()
