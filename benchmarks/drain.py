"""Drain throughput: N changes over M roots recorded through record(), then one worker drains them.

    .venv/bin/python benchmarks/drain.py --changes 100000 --roots 1000 --store sqlite
    .venv/bin/python benchmarks/drain.py --changes 100000 --roots 1000 --store mariadb
"""

from __future__ import annotations

import argparse
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
    args = ap.parse_args()
    with rig(args.store) as r:
        changes = list(Workload(args.roots, seed=args.seed).changes(args.changes))
        started = time.monotonic()
        for i in range(0, len(changes), 1000):
            with r.engine.begin() as conn:
                record_many(conn, changes[i:i + 1000])
        recorded = time.monotonic() - started
        client = r.client("bench-drain")
        worker = Worker(r.engine, client, WorkerConfig(concurrency=args.concurrency, sweep_interval=3600))
        started = time.monotonic()
        idle = worker.run_until_idle(timeout=1800)
        took = time.monotonic() - started
        worker.shutdown()
        with r.engine.connect() as conn:
            roots = list(sync.all_acked(conn))
            wanted = {root: canonical.combine(sync.desired_in_root(conn, root).values()) for root in roots}
            objects = sum(len(sync.desired_in_root(conn, root)) for root in roots)
        differing = sum(1 for root in roots if client.root_etag(root) != wanted[root])
        report(f"drain ({args.store})", {
            "changes": args.changes, "roots": args.roots, "objects after coalescing": objects,
            "record() rate (1000 per transaction)": f"{args.changes / recorded:,.0f} changes/s",
            "drain time": f"{took:.2f} s", "drain rate": f"{args.changes / took:,.0f} changes/s",
            "controller requests": client.traffic.requests, "bytes sent+received": f"{client.traffic.total:,}",
            "converged": idle and differing == 0, "worker concurrency": args.concurrency})


if __name__ == "__main__":
    main()
