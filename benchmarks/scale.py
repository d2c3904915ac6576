"""Scale: N ports over M projects held in intent and on the controller, two workers on a 3-node Galera.

The workload (``converge.bench.workload``: networks, subnets, security groups and rules, ports, routers and
their interfaces, floating IPs; an admin project owns the external network the others name) is recorded
through node 1 until it holds ``--ports`` ports; two ``converge sync run`` processes, on nodes 1 and 2,
drain it to the fabric controller. Then, each measured:

- one sweep: the paged ``GET /v1/roots`` every worker makes every ``sweep_interval`` (time, bytes);
- drift: 50 objects dropped and 50 corrupted on the controller, found by the workers' sweeps and repaired
  (seconds until every root is exact; target ≤ 10 s);
- memory: RSS of each worker and of the controller;
- ``converge status``: the whole CLI command, timed;
- a burst of 1 % more changes, drained (seconds, changes/s).

    .venv/bin/python benchmarks/scale.py --ports 100000 --projects 1000
    .venv/bin/python benchmarks/scale.py --ports 1000 --projects 10     # and 10000/100: how cost grows
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import differing_roots, report  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from converge.backends.fabric import FabricClient  # noqa: E402
from converge.bench.workload import Workload  # noqa: E402
from converge.core.kinds import Kind  # noqa: E402
from converge.store import db, migrate  # noqa: E402
from converge.store.intent import record_many  # noqa: E402
from converge.store.schema import desired, journal  # noqa: E402
from converge.testing.fabric import FabricProcess  # noqa: E402
from converge.testing.galera import GaleraCluster  # noqa: E402
from converge.testing.processes import Daemon  # noqa: E402


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def exact(engine, client: FabricClient) -> bool:  # type: ignore[no-untyped-def]
    return not journal_depth(engine) and not differing_roots(engine, client)


def journal_depth(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(journal)).scalar_one())


def until_exact(engine, client: FabricClient, timeout: float = 3600.0) -> float:  # type: ignore[no-untyped-def]
    began = time.monotonic()
    while not exact(engine, client):
        if time.monotonic() - began > timeout:
            raise TimeoutError("not exact")
        time.sleep(0.25)
    return time.monotonic() - began


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ports", type=int, default=100_000)
    ap.add_argument("--projects", type=int, default=1000)
    ap.add_argument("--sweep-interval", type=float, default=5.0)
    ap.add_argument("--workdir", type=Path, help="keep the processes' files and logs here")
    ap.add_argument("--worker-log-level", default="WARNING")
    # The drift figure includes the exactness check's own time: it reads every desired digest (~1 s at 100k).
    args = ap.parse_args()
    with (contextlib.nullcontext(str(args.workdir)) if args.workdir else
          tempfile.TemporaryDirectory(prefix="converge-scale-")) as tmp:
        work = Path(tmp)
        fabric = FabricProcess(work / "fabric", faults=True)
        cluster = GaleraCluster(work / "galera")
        procs: list[Daemon] = []
        try:
            fabric.start()
            cluster.start()
            cluster.create_database("converge")
            engine = db.make_engine(cluster.url(1, "converge"), pool_size=4)
            migrate.upgrade(engine)

            workload = Workload(args.projects, seed=11)
            began = time.monotonic()
            recorded = 0
            while workload.count(Kind.PORT) < args.ports:
                chunk = list(workload.changes(2000))
                with engine.begin() as conn:
                    record_many(conn, chunk)
                recorded += len(chunk)
            loaded = time.monotonic() - began
            with engine.connect() as conn:
                objects = int(conn.execute(select(func.count()).select_from(desired)).scalar_one())

            env = dict(os.environ, CONVERGE_CONTROLLERS=fabric.url, CONVERGE_TOKEN_FILE=str(fabric.token_file))
            for n in (1, 2):
                argv = [sys.executable, "-m", "converge.cli.main", "sync", "run", "--log-level", args.worker_log_level,
                        "--sweep-interval", str(args.sweep_interval)]
                procs.append(Daemon(f"worker-{n}", argv, log=work / f"worker-{n}.log",
                                    env=env | {"CONVERGE_DB": cluster.url(n, "converge")}))
            client = FabricClient([fabric.url], fabric.token, writer="bench-scale")
            began = time.monotonic()
            for proc in procs:
                proc.start()
            drained = until_exact(engine, client)

            sweep_began = time.monotonic()
            before = client.traffic.total
            roots = sum(1 for _ in client.roots())
            sweep = time.monotonic() - sweep_began
            sweep_bytes = client.traffic.total - before

            fabric.admin("POST", "/v1/admin/drop", {"count": 50})
            fabric.admin("POST", "/v1/admin/corrupt", {"count": 50})
            repaired = until_exact(engine, client)

            memory = {f"worker {n}": f"{rss_mb(p.pid):.0f} MB" for n, p in enumerate(procs, 1)}
            memory["controller"] = f"{rss_mb(fabric.pid):.0f} MB"

            status_began = time.monotonic()
            subprocess.run([sys.executable, "-m", "converge.cli.main", "status", "--json"], check=True,
                           capture_output=True, env=env | {"CONVERGE_DB": cluster.url(1, "converge")})
            status = time.monotonic() - status_began

            burst = list(workload.changes(max(1, recorded // 100)))
            burst_began = time.monotonic()
            for i in range(0, len(burst), 2000):
                with engine.begin() as conn:
                    record_many(conn, burst[i:i + 2000])
            recorded_in = time.monotonic() - burst_began
            while journal_depth(engine):  # drained: a cheap count, unlike the exactness check below
                time.sleep(0.05)
            drained_in = time.monotonic() - burst_began - recorded_in
            until_exact(engine, client, timeout=600)

            report(f"scale: {workload.count(Kind.PORT):,} ports over {args.projects:,} projects, two workers on "
                   "3-node Galera", {
                       "changes recorded / objects held": f"{recorded:,} / {objects:,}",
                       "load (record through node 1)": f"{loaded:.1f} s ({recorded / loaded:,.0f} changes/s)",
                       "first drain to exact": f"{drained:.1f} s ({recorded / drained:,.0f} changes/s)",
                       "one sweep (paged GET /v1/roots)": f"{1000 * sweep:.0f} ms, {sweep_bytes:,} bytes, "
                                                          f"{roots:,} roots",
                       "drift 50 dropped + 50 corrupted → exact": f"{repaired:.2f} s (sweep every "
                                                                  f"{args.sweep_interval} s)",
                       "memory (RSS)": memory,
                       "converge status --json": f"{status:.2f} s",
                       "1 % burst": f"{len(burst):,} changes recorded in {recorded_in:.1f} s, journal drained "
                                    f"{drained_in:.1f} s later ({len(burst) / drained_in:,.0f} changes/s)",
                   })
        finally:
            for proc in procs:
                proc.stop()
            fabric.stop()
            cluster.stop()


if __name__ == "__main__":
    main()
