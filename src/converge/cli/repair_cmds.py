"""``converge drift`` (log mode: report, change nothing) and ``converge repair`` (fix, root by root).

Drift compares the controller with the *desired* state, so objects still in flight show too (labelled
with their sync state). Repair takes a root's lease when it is free and repairs it here; when a worker
holds it, the worker is asked to (``repair_requested``) and the command waits for it.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from converge.cli import output
from converge.cli.context import COMMON, Settings, root_arg
from converge.core.errors import ConvergeError
from converge.core.ids import RootId
from converge.engine.reconciler import Reconciler
from converge.engine.repair import find_differences
from converge.store import leases, report, sync


def add_parsers(sub: Any) -> None:
    d = sub.add_parser(
        "drift", parents=[COMMON], help="list differences between intent and controller (changes nothing)"
    )
    d.add_argument("--root", action="append", type=root_arg, help="only these roots (default: all)")
    d.add_argument(
        "--neutron",
        action="store_true",
        help="compare Neutron's resources with the intent store instead (see converge adopt --help)",
    )
    _neutron_api_options(d)
    d.set_defaults(func=cmd_drift)
    r = sub.add_parser("repair", parents=[COMMON], help="make the controller match intent, per root")
    r.add_argument("--root", action="append", type=root_arg, help="roots to repair")
    r.add_argument("--all", action="store_true", help="every root known to the store or the controller")
    r.add_argument("--wait", type=float, default=60.0, help="seconds to wait for workers asked to repair")
    r.add_argument(
        "--neutron",
        action="store_true",
        help="record intent where it differs from Neutron's resources (see converge adopt --help)",
    )
    _neutron_api_options(r)
    r.set_defaults(func=cmd_repair)


def _neutron_api_options(parser: argparse.ArgumentParser) -> None:
    """Shown here for --help; with --neutron the command runs through converge adopt's parser, which reads them."""
    api = parser.add_argument_group("with --neutron: how to reach Neutron's API (as an administrator)")
    api.add_argument("--os-cloud", metavar="CLOUD", help="cloud name in clouds.yaml (admin credentials)")
    api.add_argument("--neutron-url", metavar="URL", help="a noauth Neutron endpoint (instead of --os-cloud)")


def _roots(cfg: Settings, args: argparse.Namespace, backend: Any) -> list[RootId]:
    if args.root:
        return [RootId(r) for r in args.root]
    engine = cfg.engine()
    with engine.connect() as conn:
        local = set(sync.all_acked(conn)) | {r.root for r in report.roots_report(conn)}
    return sorted(local | {s.root for s in backend.roots()})


def cmd_drift(cfg: Settings, args: argparse.Namespace) -> int:
    backend = cfg.backend()
    engine = cfg.engine()
    found: list[dict[str, Any]] = []
    roots = _roots(cfg, args, backend)
    with output.progress(not cfg.json) as bar:
        task = bar.add_task("comparing roots", total=len(roots))
        for root in roots:
            with engine.connect() as conn:
                local = sync.desired_in_root(conn, root)
            _, differing = find_differences(backend, root, local)
            if differing:
                with engine.connect() as conn:
                    states = sync.read_status(conn, differing)
                for key, remote in sorted(differing.items()):
                    what = (
                        "missing on controller"
                        if remote is None
                        else "not in intent"
                        if key not in local
                        else "differs"
                    )
                    st = states.get(key)
                    found.append(
                        {
                            "root": root,
                            "kind": key[0],
                            "id": key[1],
                            "difference": what,
                            "sync_state": st.state.value if st else "pending",
                        }
                    )
            bar.advance(task)
    backend.close()
    if cfg.json:
        output.emit_json({"roots": len(roots), "differences": found})
    else:
        output.table(
            "Differences (intent vs controller)",
            ["root", "kind", "id", "difference", "sync state"],
            [(f["root"], f["kind"], f["id"], f["difference"], f["sync_state"]) for f in found],
        )
        output.console.print(f"{len(roots)} roots compared, {len(found)} differences")
    return 0 if not found else 3


def cmd_repair(cfg: Settings, args: argparse.Namespace) -> int:
    if not (args.root or args.all):
        return output.fail("say what to repair: --root ROOT (repeatable) or --all")
    backend = cfg.backend(writer="converge-repair")
    engine = cfg.engine()
    roots = _roots(cfg, args, backend)
    me = leases.new_worker_id()
    reconciler = Reconciler(engine, backend)
    repaired: dict[str, int] = {}
    asked: list[RootId] = []
    failed: dict[str, str] = {}
    with output.progress(not cfg.json) as bar:
        task = bar.add_task("repairing roots", total=len(roots))
        for root in roots:
            with engine.begin() as conn:
                leases.ensure_roots(conn, [root])
                lease = leases.acquire(conn, root, me, 60.0)
            if lease is None:
                asked.append(root)
            else:
                try:
                    repaired[root] = reconciler.reconcile(lease, repair=True).fixed
                except ConvergeError as err:
                    failed[root] = str(err)
                finally:
                    with engine.begin() as conn:
                        leases.release(conn, lease)
            bar.advance(task)
        if asked:
            with engine.begin() as conn:
                sync.request_repair(conn, asked)
            wait = bar.add_task("waiting for workers holding roots", total=len(asked))
            deadline = time.monotonic() + args.wait
            left = set(asked)
            while left and time.monotonic() < deadline:
                with engine.connect() as conn:
                    left &= set(sync.repair_requests(conn))
                bar.update(wait, completed=len(asked) - len(left))
                if left:
                    time.sleep(0.2)
    backend.close()
    result = {
        "repaired_here": repaired,
        "repaired_by_workers": [r for r in asked if r not in left] if asked else [],
        "still_waiting": sorted(left) if asked else [],
        "failed": failed,
    }
    if cfg.json:
        output.emit_json(result)
    else:
        fixed = sum(repaired.values())
        output.console.print(
            f"repaired {len(repaired)} roots here ({fixed} objects differed); "
            f"{len(result['repaired_by_workers'])} by their workers; "
            f"{len(result['still_waiting'])} still waiting; {len(failed)} failed"
        )
        for name, why in failed.items():
            output.errors.print(f"  {name}: {why}", markup=False)
    return 0 if not failed and not result["still_waiting"] else 1
