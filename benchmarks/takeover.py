"""How fast a worker's roots move to the others: after kill -9 (against the lease), and after SIGTERM.

Two or more ``converge sync run`` processes (MariaDB store, fabric controller) share ``--roots`` roots with
work in each. Each round stops the worker holding the most roots — kill -9, or SIGTERM — and times how long
until every one of its roots is held by another worker (the store's ``converge_roots`` polled every 20 ms).
For kill -9 the time is also given from the dead worker's last renewal (its heartbeat, on the database's
clock), against which the lease runs: the target is at most TTL + 1 s after that renewal. The stopped
worker is started again before the next round.

    .venv/bin/python benchmarks/takeover.py [--roots 60] [--workers 2] [--rounds 3] [--lease 15]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import report, rig  # noqa: E402
from sqlalchemy import select  # noqa: E402

from converge.store.db import db_now  # noqa: E402
from converge.store.schema import roots, workers  # noqa: E402


def holders(engine) -> dict[str, str | None]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        rows = conn.execute(select(roots.c.root, roots.c.owner, roots.c.expires_at > db_now()))
        return {r[0]: (r[1] if r[2] else None) for r in rows}


def worker_rows(engine, within: float = 3.0) -> dict[int, tuple[str, float]]:  # type: ignore[no-untyped-def]
    """pid -> (worker, last heartbeat) of the workers that heartbeated in the last ``within`` seconds."""
    with engine.connect() as conn:
        rows = conn.execute(select(workers.c.pid, workers.c.worker, workers.c.heartbeat_at)
                            .where(workers.c.heartbeat_at > db_now() - within))
        return {int(r.pid): (r.worker, float(r.heartbeat_at)) for r in rows}


def db_clock(engine) -> float:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return float(conn.execute(select(db_now())).scalar_one())


def wait(probe, timeout: float = 120.0, pause: float = 0.02) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError("gave up waiting")
        time.sleep(pause)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--roots", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lease", type=float, default=15.0)
    args = ap.parse_args()
    with rig("mariadb", faults=True) as r:
        assert r.fabric is not None
        r.load(args.roots, args.roots * 20, seed=5)
        procs = r.sync_workers(args.workers, "--lease-duration", str(args.lease))
        kills: list[tuple[float, float]] = []  # (seconds after the signal, seconds after the last renewal)
        terms: list[float] = []
        try:
            for rnd in range(args.rounds * 2):
                hard = rnd % 2 == 0
                wait(lambda: len(worker_rows(r.engine, args.lease / 3 + 1)) == args.workers
                     and all(h is not None for h in holders(r.engine).values())
                     and len({h for h in holders(r.engine).values()}) == args.workers)
                held = holders(r.engine)
                ids = {w: pid for pid, (w, _) in worker_rows(r.engine, args.lease / 3 + 1).items()}
                victim = max(ids, key=lambda w: sum(1 for h in held.values() if h == w))
                theirs = [root for root, h in held.items() if h == victim]
                proc = next(p for p in procs if p.pid == ids[victim])
                beat = worker_rows(r.engine, args.lease)[ids[victim]][1]
                skew = db_clock(r.engine) - time.time()
                assert proc.pid is not None
                os.kill(proc.pid, signal.SIGKILL if hard else signal.SIGTERM)
                signalled = time.time()
                if hard:  # its last renewal may come after the read above: read it again (it is dead now)
                    time.sleep(0.1)
                    beat = worker_rows(r.engine, args.lease).get(ids[victim], (victim, beat))[1]
                wait(lambda v=victim, t=theirs: all(h not in (None, v) for root, h in holders(r.engine).items()  # type: ignore[misc]
                                                    if root in t))
                moved = time.time()
                if hard:
                    kills.append((moved - signalled, moved + skew - beat))
                else:
                    terms.append(moved - signalled)
                proc.stop()
                proc.start()
        finally:
            for p in procs:
                p.stop()

        def spread(values: list[float]) -> str:
            return f"median {statistics.median(values):.2f} s, min {min(values):.2f}, max {max(values):.2f}"

        report("takeover", {
            "workers / roots / lease": f"{args.workers} / {args.roots} / {args.lease} s",
            "kill -9: all its roots held by others, after the signal": spread([k[0] for k in kills]),
            "kill -9: after its last renewal (target ≤ TTL + 1 s)": spread([k[1] for k in kills]),
            "SIGTERM: all its roots held by others (target ≤ 1 s)": spread(terms),
            "rounds": f"{len(kills)} kill -9, {len(terms)} SIGTERM"})


if __name__ == "__main__":
    main()
