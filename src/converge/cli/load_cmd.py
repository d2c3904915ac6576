"""``converge load``: record N realistic random changes over M roots through ``record()``."""

from __future__ import annotations

import argparse
import time
from typing import Any

from converge.bench.workload import Workload
from converge.cli import output
from converge.cli.context import COMMON, Settings
from converge.store.intent import record_many


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "load", parents=[COMMON], help="record N realistic random changes over M roots (demo, benchmarks)"
    )
    p.add_argument("--changes", type=int, default=1000)
    p.add_argument("--roots", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--per-transaction",
        type=int,
        default=1000,
        help="changes per database transaction (1 = one transaction per change, like Neutron)",
    )
    p.set_defaults(func=cmd_load)


def cmd_load(cfg: Settings, args: argparse.Namespace) -> int:
    if args.changes < 1 or args.roots < 1 or args.per_transaction < 1:
        return output.fail("--changes, --roots and --per-transaction must be at least 1")
    engine = cfg.engine()
    started = time.monotonic()
    load(
        engine,
        Workload(args.roots, seed=args.seed).changes(args.changes),
        args.changes,
        args.per_transaction,
        show=not cfg.json,
    )
    took = time.monotonic() - started
    if cfg.json:
        output.emit_json({"changes": args.changes, "roots": args.roots, "seconds": round(took, 3)})
    else:
        output.console.print(
            f"recorded {args.changes} changes over {args.roots} roots in {took:.1f} s ({args.changes / took:.0f}/s)"
        )
    return 0


def load(engine: Any, changes: Any, total: int, per_transaction: int, *, show: bool = True) -> None:
    with output.progress(show) as bar:
        task = bar.add_task("recording changes", total=total)
        chunk = []
        for ch in changes:
            chunk.append(ch)
            if len(chunk) >= per_transaction:
                with engine.begin() as conn:
                    record_many(conn, chunk)
                bar.advance(task, len(chunk))
                chunk = []
        if chunk:
            with engine.begin() as conn:
                record_many(conn, chunk)
            bar.advance(task, len(chunk))
