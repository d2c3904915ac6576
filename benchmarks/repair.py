"""Bytes to repair drift vs a full resync: sync a topology, let the controller lose or corrupt N objects
behind our back (fault API), let the sweep find and repair them, and count every byte exchanged with the
controller; then push every object of the damaged roots again (what a full resync of those roots sends)
and count that the same way. Bytes and requests are broken down by request kind (sweep, the repair's
``/diff`` and ``/entries`` reads, batches). Several topologies in one run (``--roots`` and ``--changes``
paired) give the ratio per root size, summed up in a table at the end.

    .venv/bin/python benchmarks/repair.py --roots 200 20 --changes 20000 40000 --drift 100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import report, rig  # noqa: E402

from converge.backends.base import Put, Traffic  # noqa: E402
from converge.bench.workload import Workload  # noqa: E402
from converge.core import canonical  # noqa: E402
from converge.core.ids import RootId  # noqa: E402
from converge.core.kinds import RANK, Kind  # noqa: E402
from converge.engine import repair as engine_repair  # noqa: E402
from converge.engine.worker import Worker, WorkerConfig  # noqa: E402
from converge.store import sync  # noqa: E402
from converge.store.intent import record_many  # noqa: E402


class CountingTraffic(Traffic):
    """Traffic that also counts requests per purpose (request kind)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests_by_purpose: dict[str, int] = {}

    def _add(self, purpose: str, sent: int, received: int) -> None:
        super()._add(purpose, sent, received)
        self.requests_by_purpose[purpose] = self.requests_by_purpose.get(purpose, 0) + 1


def run(roots: int, changes: int, drift: int) -> dict[str, object]:
    with rig("sqlite", faults=True) as r:
        workload = list(Workload(roots, seed=3).changes(changes))
        for i in range(0, len(workload), 1000):
            with r.engine.begin() as conn:
                record_many(conn, workload[i:i + 1000])
        first = Worker(r.engine, r.client(), WorkerConfig(sweep_interval=3600))
        first.run_until_idle(600)
        first.shutdown()  # hand the roots over at once (else the next worker waits for the leases to expire)

        dropped = r.fabric.admin("POST", "/v1/admin/drop", {"count": drift // 2})["objects"]
        corrupted = r.fabric.admin("POST", "/v1/admin/corrupt", {"count": drift - drift // 2})["objects"]
        damaged = sorted({RootId(o["root"]) for o in dropped + corrupted})

        client = r.client("bench-repair")
        traffic = client.traffic = CountingTraffic()
        worker = Worker(r.engine, client, WorkerConfig(sweep_interval=3600))
        started = time.monotonic()
        worker.run_until_idle(600)  # the first step sweeps, finds the damaged roots, repairs them
        took = time.monotonic() - started
        worker.shutdown()
        sweep = traffic.by_purpose.get("sweep", 0)
        repair = traffic.total - sweep
        repair_sent = traffic.bytes_sent - traffic.sent_by_purpose.get("sweep", 0)
        kinds = {p: f"{n:,} B in {traffic.requests_by_purpose[p]} requests, {n / len(damaged):,.0f} B a root"
                 for p, n in sorted(traffic.by_purpose.items())}

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
        resync = full.traffic.total
        figures: dict[str, object] = {
            "topology": f"{roots} roots, {changes} changes: {objects / len(damaged):.0f} objects a damaged root",
            "objects drifted": f"{len(dropped)} dropped + {len(corrupted)} corrupted",
            "roots damaged": f"{len(damaged)} of {roots}", "objects in damaged roots": objects,
            "repair bytes (sent+received)": f"{repair:,} ({repair / len(damaged):,.0f} a damaged root)",
            "sweep bytes (all roots, one pass)": f"{sweep:,}",
            "full resync bytes (puts only)": f"{resync:,} ({resync / len(damaged):,.0f} a root)",
            "repair / full resync": f"{100 * repair / resync:.2f} %",
            "bytes sent only: repair / full resync": f"{100 * repair_sent / full.traffic.bytes_sent:.2f} %",
            "(repair + sweep) / full resync": f"{100 * (repair + sweep) / resync:.2f} %",
            "by request kind": kinds, "requests": traffic.requests,
            "repair time": f"{took:.2f} s", "converged": converged}
        report("repair vs full resync", figures)
        return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--roots", type=int, nargs="+", default=[200])
    ap.add_argument("--changes", type=int, nargs="+", default=[20_000])
    ap.add_argument("--drift", type=int, default=100, help="objects dropped (half) or corrupted (half)")
    ap.add_argument("--list", type=int, default=engine_repair.LIST_AT_MOST,
                    help="list a differing group whole up to this many objects (engine.repair.LIST_AT_MOST)")
    args = ap.parse_args()
    engine_repair.LIST_AT_MOST = args.list
    if len(args.roots) != len(args.changes):
        ap.error("--roots and --changes pair up: give as many of each")
    runs = [run(roots, changes, args.drift) for roots, changes in zip(args.roots, args.changes, strict=True)]
    print("\n| topology | damaged roots | repair bytes | full resync bytes | sent+received | sent only | time |")
    print("|---|---|---|---|---|---|---|")
    for f in runs:
        print(f"| {f['topology']} | {f['roots damaged']} | {f['repair bytes (sent+received)']} | "
              f"{f['full resync bytes (puts only)']} | {f['repair / full resync']} | "
              f"{f['bytes sent only: repair / full resync']} | {f['repair time']} |")


if __name__ == "__main__":
    main()
