"""``converge demo``: the main job, end to end on one machine; the options choose which demo runs.

By default Neutron's API with Converge on OVN, proven with packets (``cli/ovn_demo.py``); ``--backend fabric``
the same Neutron stack on the reference fabric controller (``cli/neutron_demo.py``); ``--embedded`` the
engine alone, below.

``--embedded`` starts a local fabric controller (its own process, loopback only), creates a SQLite intent store,
records a demo topology through ``record()``, runs a sync worker until the journal is drained, then
proves convergence: for every root the controller's ETag equals the fingerprint of the desired objects
computed locally. Prints the status and stops the controller by its PID.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

from converge.backends.base import Backend
from converge.backends.select import BackendKind
from converge.bench.workload import Workload
from converge.cli import output
from converge.cli.context import COMMON, Settings
from converge.cli.load_cmd import load
from converge.cli.sync_cmds import cmd_status
from converge.core import canonical
from converge.engine.worker import Worker, WorkerConfig
from converge.store import sync


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "demo", parents=[COMMON],
        help="start OVN, MariaDB and Neutron's API with Converge, create a cloud through the API, prove it with "
        "packets (--backend fabric: on the fabric controller; --embedded: the engine alone)",
    )
    p.add_argument("--roots", type=int, default=20)
    p.add_argument("--changes", type=int, default=3000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workdir", default="var/demo")
    p.add_argument("--keep-running", action="store_true",
                   help="--embedded: leave the controller running at the end; otherwise keep everything running "
                   "after the checks until Ctrl-C")
    p.add_argument("--embedded", action="store_true",
                   help="engine only: SQLite store and record() instead of the Neutron API stack")
    p.add_argument("--projects", type=int, default=4, help="with --backend fabric: demo projects")
    p.set_defaults(func=cmd_demo)


def cmd_demo(cfg: Settings, args: argparse.Namespace) -> int:
    # Only the command line chooses (not CONVERGE_BACKEND nor a config file): the demo starts its own backend.
    backend = args.backend or BackendKind.OVN.value
    if args.embedded:
        if args.backend == BackendKind.OVN.value:
            return output.fail("--embedded runs the engine on the fabric controller only", 2)
        return cmd_embedded(cfg, args)
    if backend == BackendKind.FABRIC.value:
        from converge.cli import neutron_demo

        return neutron_demo.run(cfg, args)
    from converge.cli import ovn_demo  # loads the OVN launchers only when they run

    return ovn_demo.run(cfg, args)


def cmd_embedded(cfg: Settings, args: argparse.Namespace) -> int:
    from converge.testing.fabric import FabricProcess  # the launcher is shipped with the package

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    fabric = FabricProcess(work / "fabric", faults=False, port_up_delay=0.2)
    fabric.start()
    output.console.print(f"fabric controller: {fabric.url} (pid {fabric.pid})")
    token_file = work / "fabric" / "token"
    token_file.write_text(fabric.token)
    token_file.chmod(0o600)
    local = Settings(f"sqlite:///{work / 'converge.sqlite'}", (fabric.url,), str(token_file), cfg.json)
    try:
        engine = local.engine()
        load(
            engine,
            Workload(args.roots, seed=args.seed, prefix="demo").changes(args.changes),
            args.changes,
            500,
            show=True,
        )
        backend = local.backend(writer="converge-demo")
        worker = Worker(engine, backend, WorkerConfig(sweep_interval=1.0))
        started = time.monotonic()
        with engine.connect() as conn:
            total = len(sync.pending_roots(conn))
        with output.progress(True) as bar:
            task = bar.add_task("syncing roots", total=total)
            done: set[str] = set()

            def tick(root: str) -> None:
                done.add(root)
                bar.update(task, completed=min(total, len(done)))

            worker.on_reconciled = tick
            idle = worker.run_until_idle(timeout=300)
        took = time.monotonic() - started
        worker.shutdown()
        mismatched = verify(engine, backend)
        backend.close()
        args.root = None
        cmd_status(local, args)
        if not idle or mismatched:
            return output.fail(f"not converged: idle={idle}, roots differing: {mismatched}", 1)
        output.console.print(
            f"[green bold]converged[/green bold]: {args.changes} changes over {args.roots} "
            f"roots synced in {took:.2f} s; every root's controller ETag equals the "
            "fingerprint of its desired objects"
        )
        return 0
    finally:
        if args.keep_running:
            output.console.print(f"controller left running: pid {fabric.pid}, {fabric.url}")
        else:
            fabric.stop()


def verify(engine: Any, backend: Backend) -> list[str]:
    """Roots whose controller ETag differs from the fingerprint of their desired objects."""
    with engine.connect() as conn:
        names = list(sync.all_acked(conn))
        wanted = {r: canonical.combine(sync.desired_in_root(conn, r).values()) for r in names}
    return [r for r in names if backend.root_etag(r) != wanted[r]]
