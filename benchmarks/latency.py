"""Commit → controller latency at a steady rate: a separate process records changes through record(),
one transaction each, at --rate per second (like Neutron API workers would); a worker in this process
drains them. Latency of a change = when the controller answered the batch carrying that revision of
the object (or a newer one) − when the recording transaction committed. Both clocks are this machine's.

    .venv/bin/python benchmarks/latency.py --rate 200 --seconds 30 --store sqlite
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import percentile, report, rig  # noqa: E402

from converge.backends.base import Operation, Put  # noqa: E402
from converge.backends.fabric import FabricClient  # noqa: E402
from converge.bench.workload import Workload  # noqa: E402
from converge.core.ids import RootId  # noqa: E402
from converge.engine.worker import Worker, WorkerConfig  # noqa: E402
from converge.store import db, sync  # noqa: E402
from converge.store.intent import record  # noqa: E402


class TimedClient(FabricClient):
    """Notes when the controller acknowledged each (object, revision)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.applied: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
        self._lock = threading.Lock()

    def apply(self, root: RootId, *, if_match: int, operations: Sequence[Operation], epoch: int = 0) -> int:
        etag = super().apply(root, if_match=if_match, operations=operations, epoch=epoch)
        now = time.time()
        with self._lock:
            for op in operations:
                if isinstance(op, Put):
                    self.applied[op.key].append((op.doc.revision, now))
        return etag


def recorder(url: str, rate: float, seconds: float, roots: int, out: Path) -> None:
    engine = db.make_engine(url)
    workload = Workload(roots, seed=5, prefix="lat").changes(int(rate * seconds))
    start = time.time() + 0.5
    with out.open("w") as f:
        for i, change in enumerate(workload):
            due = start + i / rate
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            with engine.begin() as conn:
                record(conn, change)
            f.write(f"{change.kind.value} {change.id} {change.op.value} {change.revision} {time.time():.6f}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--roots", type=int, default=100)
    ap.add_argument("--store", choices=["sqlite", "mariadb"], default="sqlite")
    ap.add_argument("--record-only", help=argparse.SUPPRESS)  # internal: the recorder process
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.record_only:
        recorder(args.record_only, args.rate, args.seconds, args.roots, Path(args.out))
        return
    with rig(args.store) as r:
        client = TimedClient([r.fabric.url], r.fabric.token, writer="bench-latency")
        worker = Worker(r.engine, client, WorkerConfig(sweep_interval=3600))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        out = r.workdir / "commits.txt"
        url = r.engine.url.render_as_string(hide_password=False)
        subprocess.run([sys.executable, __file__, "--record-only", url, "--out", str(out), "--rate", str(args.rate),
                        "--seconds", str(args.seconds), "--roots", str(args.roots)], check=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with r.engine.connect() as conn:
                if not sync.pending_roots(conn, limit=1):
                    break
            time.sleep(0.05)
        worker.stop()
        thread.join(30)
        latencies, lost, coalesced = [], 0, 0
        commits = [line.split() for line in out.read_text().splitlines()]
        deleted = {(kind, oid) for kind, oid, op, _, _ in commits if op == "delete"}
        for kind, oid, op, revision, t in commits:
            if op == "delete":
                continue
            seen = client.applied.get((kind, oid), [])
            # A revision cannot reach the controller before it is committed, so the first apply carrying it
            # (or a newer one) is the answer; the recorder may note its commit a hair after the worker saw it.
            times = [ts for rev, ts in seen if rev >= int(revision)]
            if not times:
                # Deleted before a worker got to it: coalesced away, correctly never sent.
                coalesced += (kind, oid) in deleted
                if (kind, oid) not in deleted:
                    lost += 1
                    with r.engine.connect() as conn:
                        st = sync.read_status(conn, [(kind, oid)]).get((kind, oid))
                    print(f"not seen: {kind} {oid} rev {revision} ({op}); status {st}", file=sys.stderr)
                continue
            latencies.append(max(0.0, min(times) - float(t)))
        latencies_ms = [x * 1000 for x in latencies]
        report(f"commit -> controller latency ({args.store})", {
            "rate": f"{args.rate:.0f} changes/s for {args.seconds:.0f} s", "changes recorded": len(commits),
            "put changes measured": len(latencies), "created then deleted before a drain": coalesced,
            "never seen at controller (lost)": lost,
            "p50": f"{percentile(latencies_ms, 50):.1f} ms", "p90": f"{percentile(latencies_ms, 90):.1f} ms",
            "p99": f"{percentile(latencies_ms, 99):.1f} ms", "max": f"{max(latencies_ms):.1f} ms",
            "poll interval": f"{worker.config.poll_interval * 1000:.0f} ms"})


if __name__ == "__main__":
    main()
