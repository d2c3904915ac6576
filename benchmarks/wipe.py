"""A wiped controller, repaired by two worker processes: time until exact, operations sent, and how many
batches were refused for a missing parent (wasted work).

Two ``converge sync run`` processes (MariaDB store, fabric controller with faults on) sync a workload of
``--roots`` roots (one owns the external network other roots' routers and floating IPs name), the
controller is wiped, and the workers' sweeps find and repair every root. Printed: seconds from the wipe
until every root's controller ETag equals its desired fingerprint, operations applied and refused after
the wipe (from the controller's audit log), and the sweep interval that bounds detection.

    .venv/bin/python benchmarks/wipe.py [--roots 200] [--changes 20000] [--sweep-interval 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import differing_roots, report, rig  # noqa: E402


def exact(r, client) -> bool:  # type: ignore[no-untyped-def]
    return not differing_roots(r.engine, client)


def audit_after(fabric, seq: int) -> list[dict]:  # type: ignore[no-untyped-def]
    out: list[dict] = []
    while True:
        page = fabric.get("/v1/audit", params={"after": seq, "limit": 1000})
        out += page["entries"]
        if not page["entries"]:
            return out
        seq = page["entries"][-1]["seq"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--roots", type=int, default=200)
    ap.add_argument("--changes", type=int, default=20_000)
    ap.add_argument("--sweep-interval", type=float, default=5.0)
    args = ap.parse_args()
    with rig("mariadb", faults=True) as r:
        assert r.fabric is not None
        changes = r.load(args.roots, args.changes, seed=3)
        procs = r.sync_workers(2, "--sweep-interval", str(args.sweep_interval))
        client = r.client("bench-wipe")
        try:
            started = time.monotonic()
            while not exact(r, client):
                time.sleep(0.2)
            synced = time.monotonic() - started
            entries = audit_after(r.fabric, 0)
            seq = entries[-1]["seq"] if entries else 0
            removed = r.fabric.admin("POST", "/v1/admin/wipe")["removed"]
            wiped = time.monotonic()
            while not exact(r, client):
                time.sleep(0.05)
            took = time.monotonic() - wiped
            after = [e for e in audit_after(r.fabric, seq) if not e["writer"].startswith("fault:")]
            status = Counter(e["status"] for e in after)
            ops = Counter()
            for e in after:
                ops[e["status"]] += e["operations"]
            sent = sum(ops.values())
            report("wiped controller repaired by two workers", {
                "roots": args.roots, "changes recorded": len(changes), "objects wiped": removed,
                "first sync": f"{synced:.1f} s", "sweep interval": f"{args.sweep_interval} s",
                "wipe → exact": f"{took:.2f} s",
                "batches after the wipe by status": dict(status),
                "operations applied": ops.get(200, 0),
                "operations in refused batches": sum(n for s, n in ops.items() if s != 200),
                "wasted (refused / all sent)": f"{100 * (sent - ops.get(200, 0)) / max(1, sent):.1f} %"})
        finally:
            for p in procs:
                p.stop()


if __name__ == "__main__":
    main()
