"""``converge sync run``, ``status``, ``journal``, ``retry``: run a worker and look at its work.

``sync run`` is the engine's worker alone, for a store and a controller without Neutron (the demo, the
benchmarks, a SQLite store) or as one more worker beside Neutron's. With ``--config-file`` (Neutron's files)
it takes the database, the controller and the worker's settings (``[converge]`` lease_duration,
poll_interval, batch_size …) from them, its flags overriding; but it loads no Neutron and so turns no port
ACTIVE: in a Neutron deployment that is ``converge-agent``'s work (converge.neutron.agent, an OpenStack
service reading the same files), or ``neutron-periodic-workers``' with ``[converge] sync_workers`` ≥ 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.engine import Engine

from converge.cli import output
from converge.cli.context import COMMON, Settings, root_arg
from converge.core.errors import ConfigurationError, ConvergeError
from converge.core.ids import RootId
from converge.core.inifile import LEASE_KEY, WORKER_KEYS, number, read_neutron_config
from converge.engine import metrics
from converge.engine.worker import Worker, WorkerConfig
from converge.store import leases, operator, report
from converge.store.leases import LeaseTiming
from converge.store.report import WorkerReport

log = logging.getLogger(__name__)
DEFAULTS = WorkerConfig()


def add_parsers(sub: Any) -> None:
    run = sub.add_parser("sync", parents=[COMMON], help="run a sync worker").add_subparsers(
        dest="sync_cmd", required=True
    )
    p = run.add_parser(
        "run", parents=[COMMON], help="drain the journal to the controller until stopped (SIGTERM/SIGINT)"
    )
    p.add_argument("--until-idle", action="store_true", help="exit once everything is drained")
    p.add_argument("--timeout", type=float, default=300.0, help="with --until-idle: give up after S seconds")
    for key in (*WORKER_KEYS, LEASE_KEY):  # --poll-interval … --lease-duration (docs/operations.md)
        default = _default(key)
        p.add_argument(f"--{key.replace('_', '-')}", type=type(default), default=None, metavar="N",
                       help=f"default: [converge] {key} of --config-file, else {default}")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics (default: [converge] metrics_port "
                        "of --config-file, else not served; 0: not served)")
    p.add_argument("--metrics-host", default=None, metavar="HOST",
                   help="address the metrics endpoint listens on (default: [converge] metrics_host of "
                        "--config-file, else 127.0.0.1)")
    p.set_defaults(func=cmd_sync_run)

    s = sub.add_parser("status", parents=[COMMON],
                       help="per-root backlog, errors, leases; workers; controller health (as the backend sees it "
                            "after one read: the fabric's circuit breaker per URL, OVN's NB connection)")
    s.add_argument("--root", action="append", type=root_arg, help="only these roots")
    s.set_defaults(func=cmd_status)

    j = sub.add_parser("journal", parents=[COMMON], help="pending changes and refused/blocked objects")
    j.add_argument("--root", type=root_arg)
    j.add_argument("--limit", type=int, default=50)
    j.add_argument("show", nargs="*", metavar="KIND ID", help="inspect one object: KIND ID")
    j.set_defaults(func=cmd_journal)

    r = sub.add_parser("retry", parents=[COMMON], help="retry objects the controller refused")
    r.add_argument("objects", nargs="*", metavar="KIND/ID")
    r.add_argument("--root", type=root_arg)
    r.add_argument("--all", action="store_true", help="every refused object")
    r.set_defaults(func=cmd_retry)


def _default(key: str) -> float | int:
    value: float | int = DEFAULTS.lease.duration if key == LEASE_KEY else getattr(DEFAULTS, key)
    return value


def worker_config(args: argparse.Namespace, conf: Mapping[str, str] | None = None) -> WorkerConfig:
    """Each setting from its flag, else from ``[converge]`` of the ``--config-file`` files (``conf``, when the
    caller read them already), else the default."""
    if conf is None:
        conf = read_neutron_config(args.config_file) if args.config_file else {}
    values: dict[str, float | int] = {}
    for key in (*WORKER_KEYS, LEASE_KEY):
        default = _default(key)
        values[key] = next(v for v in (getattr(args, key), number(conf, key, type(default)), default) if v is not None)
    d = values.pop(LEASE_KEY)
    return WorkerConfig(**values, lease=LeaseTiming(duration=d, renew_every=d / 3,  # type: ignore[arg-type]
                                                    renew_deadline=d * 2 / 3))


def cmd_sync_run(cfg: Settings, args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = worker_config(args, cfg.file_conf)
    if args.config_file:
        log.warning("converge sync run turns no Neutron port ACTIVE: ports Converge binds go ACTIVE where "
                    "converge-agent, or neutron-periodic-workers with [converge] sync_workers >= 1, runs a worker")
    engine = cfg.engine()
    if engine.dialect.name == "sqlite":
        other = _other_sqlite_worker(engine, settings.lease.duration)
        if other is not None:
            return output.fail(
                f"another sync worker ({other.worker}, pid {other.pid} on {other.host}, heartbeat "
                f"{other.heartbeat_age:.0f} s ago) runs on this SQLite store; SQLite supports one sync worker "
                "(one paused writer would hold every other one): stop it, or use MariaDB for several")
    worker_id = leases.new_worker_id()
    backend = cfg.backend(writer=worker_id)  # the controller's audit log names each worker
    worker = Worker(engine, backend, settings, worker_id=worker_id)
    stop_metrics = _serve_metrics(worker, args, cfg.file_conf)
    try:
        if args.until_idle:
            try:
                ok = worker.run_until_idle(args.timeout)
            finally:
                worker.shutdown()
            if not ok:
                return output.fail(f"not idle after {args.timeout:.0f} s (see converge status)", 1)
            output.console.print("[green]idle: journal drained[/green]")
            return 0
        signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        signal.signal(signal.SIGINT, lambda *_: worker.stop())
        worker.run()
        return 0
    finally:
        if stop_metrics is not None:
            stop_metrics()


def _serve_metrics(worker: Worker, args: argparse.Namespace, conf: Mapping[str, str]) -> Callable[[], None] | None:
    """The metrics endpoint the flags, else the ``--config-file`` files (``conf``), ask for; None when not asked."""
    port = args.metrics_port if args.metrics_port is not None else number(conf, "metrics_port", int)
    host = args.metrics_host or conf.get("metrics_host") or "127.0.0.1"
    if not port:
        return None
    try:
        return metrics.serve(worker.metrics.registry, host, int(port))
    except OSError as err:
        raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {err.strerror}") from None


def _other_sqlite_worker(engine: Engine, within: float) -> WorkerReport | None:
    """A live sync worker registered in this SQLite store (a dead one on this host does not count)."""
    with engine.connect() as conn:
        found = [w for w in report.workers_report(conn) if w.heartbeat_age < within]
    here = socket.gethostname()[:255]
    for w in found:
        if w.host == here and not _alive(w.pid):
            continue
        return w
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_status(cfg: Settings, args: argparse.Namespace) -> int:
    engine = cfg.engine()
    with engine.connect() as conn:
        roots = report.roots_report(conn, args.root)
        workers = report.workers_report(conn)
    health: list[dict[str, Any]] = []
    unreachable: str | None = None
    if cfg.has_backend:
        backend = cfg.backend()
        try:
            # One read first, so that what the backend says of its endpoints is news, not its start state.
            backend.root_etag(roots[0].root if roots else RootId("converge-status"))
        except ConvergeError as err:
            unreachable = f"{type(err).__name__}: {err}"
        finally:
            # One failed read leaves a breaker closed (it opens after several): say what this read found.
            health = [{"url": h.url, "state": "unreachable" if unreachable and h.failures and h.state == "closed"
                       else h.state, "error": h.last_error} for h in backend.health()]
            backend.close()
    if cfg.json:
        output.emit_json({"roots": roots, "workers": workers, "controllers": health, "controller_error": unreachable,
                          "settings": cfg.describe()})
        return 0
    output.table(
        "Roots",
        ["root", "objects", "pending", "oldest pending", "errors", "blocked", "lease holder", "failures", "last error"],
        [
            (
                r.root,
                r.objects,
                r.pending,
                output.age(r.oldest_pending_age),
                r.errors,
                r.blocked,
                r.owner or "-",
                r.failures,
                (r.last_error or "")[:60],
            )
            for r in roots
        ],
    )
    output.table(
        "Workers",
        ["worker", "host", "pid", "heartbeat"],
        [(w.worker, w.host, w.pid, output.age(w.heartbeat_age) + " ago") for w in workers],
    )
    if health:
        output.table("Controllers", ["url", "state", "error"], [(h["url"], h["state"], h["error"]) for h in health])
    if unreachable:
        output.errors.print(f"controller: {unreachable}", markup=False)
    pending = sum(r.pending for r in roots)
    errs = sum(r.errors for r in roots)
    blocked = sum(r.blocked for r in roots)
    verdict = "converged" if not (pending or errs or blocked) else "not converged"
    output.console.print(
        f"{len(roots)} roots, {sum(r.objects for r in roots)} objects: {pending} pending, "
        f"{errs} errors, {blocked} blocked — [bold]{verdict}[/bold]"
    )
    return 0


def cmd_journal(cfg: Settings, args: argparse.Namespace) -> int:
    engine = cfg.engine()
    if args.show:
        # `journal show KIND ID` (the documented form) or `journal KIND ID`: the positional takes "show" too.
        show = args.show[1:] if args.show[0] == "show" else args.show
        if len(show) != 2:
            return output.fail("journal show needs KIND ID")
        with engine.connect() as conn:
            detail = report.object_detail(conn, show[0], show[1])
        if detail["desired"] is None and detail["status"] is None and not detail["journal"]:
            return output.fail(f"no object {show[0]} {show[1]} in the store", 1)
        output.emit_json(detail) if cfg.json else output.console.print_json(data=detail, default=str)
        return 0
    with engine.connect() as conn:
        rows = report.journal_rows(conn, args.root, args.limit)
        problems = report.problems(conn, args.root, args.limit)
    if cfg.json:
        output.emit_json({"pending": rows, "problems": problems})
        return 0
    output.table(
        "Pending changes (oldest first)",
        ["seq", "root", "kind", "id", "op", "age"],
        [(r.seq, r.root, r.kind, r.id, r.op, output.age(r.age)) for r in rows],
    )
    output.table(
        "Refused and blocked objects",
        ["root", "kind", "id", "state", "attempts", "message"],
        [(p.root, p.kind, p.id, p.state, p.attempts, p.message) for p in problems],
    )
    return 0


def cmd_retry(cfg: Settings, args: argparse.Namespace) -> int:
    if not (args.objects or args.root or args.all):
        return output.fail("say what to retry: KIND/ID ..., --root ROOT, or --all")
    keys = None
    if args.objects:
        keys = []
        for item in args.objects:
            kind, _, oid = item.partition("/")
            if not oid:
                return output.fail(f"{item!r}: expected KIND/ID, e.g. port/3f2a...")
            keys.append((kind, oid))
    engine = cfg.engine()
    with engine.begin() as conn:
        done = operator.retry(conn, root=args.root, keys=keys)
    if cfg.json:
        output.emit_json({"retried": [f"{k}/{i}" for k, i in done]})
    else:
        output.console.print(f"{len(done)} refused objects put back in the journal")
    return 0
