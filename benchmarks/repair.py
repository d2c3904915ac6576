"""Bytes to repair drift vs a full resync: sync a topology, let the controller lose or corrupt N objects
behind our back (fault API), let the sweep find and repair them, and count every byte exchanged with the
controller; then push every object of the damaged roots again (what a full resync of those roots sends)
and count that the same way.

    .venv/bin/python benchmarks/repair.py --roots 200 --changes 20000 --drift 100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import report, rig  # noqa: E402

from converge.backends.base import Put  # noqa: E402
from converge.bench.workload import Workload  # noqa: E402
from converge.core import canonical  # noqa: E402
from converge.core.ids import RootId  # noqa: E402
from converge.core.kinds import RANK, Kind  # noqa: E402
from converge.engine.worker import Worker, WorkerConfig  # noqa: E402
from converge.store import sync  # noqa: E402
from converge.store.intent import record_many  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--roots", type=int, default=200)
    ap.add_argument("--changes", type=int, default=20_000)
    ap.add_argument("--drift", type=int, default=100, help="objects dropped (half) or corrupted (half)")
    args = ap.parse_args()
    with rig("sqlite", faults=True) as r:
        changes = list(Workload(args.roots, seed=3).changes(args.changes))
        for i in range(0, len(changes), 1000):
            with r.engine.begin() as conn:
                record_many(conn, changes[i:i + 1000])
        first = Worker(r.engine, r.client(), WorkerConfig(sweep_interval=3600))
        first.run_until_idle(600)
        first.shutdown()  # hand the roots over at once (else the next worker waits for the leases to expire)

        dropped = r.fabric.admin("POST", "/v1/admin/drop", {"count": args.drift // 2})["objects"]
        corrupted = r.fabric.admin("POST", "/v1/admin/corrupt", {"count": args.drift - args.drift // 2})["objects"]
        damaged = sorted({RootId(o["root"]) for o in dropped + corrupted})

        client = r.client("bench-repair")
        worker = Worker(r.engine, client, WorkerConfig(sweep_interval=3600))
        started = time.monotonic()
        worker.run_until_idle(600)  # the first step sweeps, finds the damaged roots, repairs them
        took = time.monotonic() - started
        worker.shutdown()
        sweep = client.traffic.by_purpose.get("sweep", 0)
        repair = client.traffic.total - sweep
        repair_sent = client.traffic.bytes_sent - client.traffic.sent_by_purpose.get("sweep", 0)

        with r.engine.connect() as conn:
            wanted = {root: sync.desired_in_root(conn, root) for root in damaged}
            rows = {root: sync.read_desired(conn, list(keys)) for root, keys in wanted.items()}
        converged = all(client.root_etag(root) == canonical.combine(w.values()) for root, w in wanted.items())

        full = r.client("bench-full-resync")
        for root in damaged:
            ordered = sorted(rows[root].values(), key=lambda row: (RANK[Kind(row.kind)], row.kind, row.id))
            ops = [Put(row.doc) for row in ordered]
            etag = full.root_etag(root)
            full.traffic = type(full.traffic)() if root == damaged[0] else full.traffic  # count batches only
            for i in range(0, len(ops), 500):
                etag = full.apply(root, if_match=etag, operations=ops[i:i + 500])
        objects = sum(len(w) for w in wanted.values())
        report("repair vs full resync", {
            "objects drifted": f"{len(dropped)} dropped + {len(corrupted)} corrupted",
            "roots damaged": f"{len(damaged)} of {args.roots}", "objects in damaged roots": objects,
            "repair bytes (sent+received)": f"{repair:,}", "sweep bytes (all roots, one pass)": f"{sweep:,}",
            "full resync bytes (puts only)": f"{full.traffic.total:,}",
            "repair / full resync": f"{100 * repair / full.traffic.total:.2f} %",
            "bytes sent only: repair / full resync": f"{100 * repair_sent / full.traffic.bytes_sent:.2f} %",
            "(repair + sweep) / full resync": f"{100 * (repair + sweep) / full.traffic.total:.2f} %",
            "repair bytes by purpose": dict(client.traffic.by_purpose), "requests": client.traffic.requests,
            "repair time": f"{took:.2f} s", "converged": converged})


if __name__ == "__main__":
    main()
