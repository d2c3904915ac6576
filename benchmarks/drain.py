"""Drain throughput: N changes over M roots recorded through record(), then one worker drains them.

    .venv/bin/python benchmarks/drain.py --changes 100000 --roots 1000 --store sqlite
    .venv/bin/python benchmarks/drain.py --changes 100000 --roots 1000 --store mariadb
    .venv/bin/python benchmarks/drain.py --changes 20000 --roots 200 --backend ovn
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import report, rig  # noqa: E402

from converge.bench.workload import Workload  # noqa: E402
from converge.core import canonical  # noqa: E402
from converge.engine.worker import Worker, WorkerConfig  # noqa: E402
from converge.store import sync  # noqa: E402
from converge.store.intent import record_many  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--changes", type=int, default=100_000)
    ap.add_argument("--roots", type=int, default=1000)
    ap.add_argument("--store", choices=["sqlite", "mariadb"], default="sqlite")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--backend", choices=["fabric", "ovn"], default="fabric")
    args = ap.parse_args()
    with rig(args.store, backend=args.backend) as r:
        changes = list(Workload(args.roots, seed=args.seed).changes(args.changes))
        started = time.monotonic()
        for i in range(0, len(changes), 1000):
            with r.engine.begin() as conn:
                record_many(conn, changes[i:i + 1000])
        recorded = time.monotonic() - started
        client = r.client("bench-drain")
        cpu_before = _cpu(r)
        worker = Worker(r.engine, client, WorkerConfig(concurrency=args.concurrency, sweep_interval=3600))
        started = time.monotonic()
        idle = worker.run_until_idle(timeout=1800)
        took = time.monotonic() - started
        cpu = {name: after - cpu_before.get(name, 0.0) for name, after in _cpu(r).items()}
        worker.shutdown()
        with r.engine.connect() as conn:
            roots = list(sync.all_acked(conn))
            wanted = {root: canonical.combine(sync.desired_in_root(conn, root).values()) for root in roots}
            objects = sum(len(sync.desired_in_root(conn, root)) for root in roots)
        differing = sum(1 for root in roots if client.root_etag(root) != wanted[root])
        rss = _rss_mb()
        report(f"drain ({args.store}, {args.backend})", {
            "changes": args.changes, "roots": args.roots, "objects after coalescing": objects,
            "record() rate (1000 per transaction)": f"{args.changes / recorded:,.0f} changes/s",
            "drain time": f"{took:.2f} s", "drain rate": f"{args.changes / took:,.0f} changes/s",
            "controller requests": client.traffic.requests, "bytes sent+received": f"{client.traffic.total:,}",
            "converged": idle and differing == 0, "worker concurrency": args.concurrency,
            "worker process RSS (replica included for ovn)": f"{rss:.0f} MB",
            "CPU seconds during the drain": ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())})
        client.close()


def _cpu(r: object) -> dict[str, float]:
    """CPU seconds (user + system) so far of this process and of the controller's processes."""
    tick = os.sysconf("SC_CLK_TCK")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {"worker": usage.ru_utime + usage.ru_stime}
    ovn = getattr(r, "ovn", None)
    fabric = getattr(r, "fabric", None)
    pids = dict(ovn.pids()) if ovn is not None else ({"fabric": fabric.pid} if fabric is not None else {})
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out[name] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    main()
