"""Neutron's own ML2/OVN vs Converge on OVN vs a no-op driver, side by side, in one run on this machine.

Three Neutron stacks (the API under uWSGI, 2 processes x 1 thread, each with a fresh database on one
MariaDB), each with a fresh OVN control plane of its own (NB, SB, northd in a temp dir):

- **ML2/OVN**: ``mechanism_drivers = ovn``, ``service_plugins = ovn-router``, ``[ovn]`` NB/SB over TCP,
  metadata off; ``neutron-periodic-workers`` and ``neutron-ovn-maintenance-worker`` (Neutron 29 runs the
  driver's ``MaintenanceWorker`` only there: ``neutron-periodic-workers`` skips it);
- **Converge on OVN**: ``mechanism_drivers = converge``, ``service_plugins = converge_router``,
  extension drivers ``port_security,converge``, ``[converge] backend = ovn``; the sync worker runs in
  ``neutron-periodic-workers``;
- **no-op**: ``mechanism_drivers = converge_noop``, ``service_plugins = router``, no periodic workers.

All three: ``type_drivers = flat,vlan,geneve``, geneve project networks (``vni_ranges = 1:65536``,
``max_header_size = 38``), ``extension_drivers`` with ``port_security``. ML2/OVN and Converge each get a
chassis (``OvnDataplane``, userspace datapath) named ``compute-1``; every port is created with
``binding:host_id = compute-1``, so all three drivers bind it.

Parts (``--parts``, all by default):

- ``latency``: port creates through the API (openstacksdk, ``create_port`` of benchmarks/neutron.py),
  sequential (rounds of one create per stack, stacks in a seeded random order per round, or rotated)
  and with ``--clients`` concurrent clients (rounds of one burst per stack); median and p90 per stack
  and the ratio to the no-op median. Also **NB transactions per port**: the records NB appended to its
  database file during those creates (a standalone ovsdb-server writes exactly one record per committed
  transaction; northd's carry the comment ``ovn-northd``), split into northd's and the rest (the
  Neutron side);
- ``active``: POST a port, plug a namespace with ``iface-id`` = the port id into the stack's chassis at
  once, poll GET until ``status == ACTIVE``;
- ``outage``: on every stack at once, a client creating ports one after another and a client listing
  ports (GET, one per second) run ``--outage`` seconds with NB up, then ``--outage`` seconds with NB
  stopped (``OvnControlPlane.stop_nb()``: the ovsdb-server killed by its PID), then NB is started again;
  every call has a client timeout (``--call-timeout``) and no call starts once the window closed, so
  the part ends. Then the time until every Neutron port is in NB and no other port is (and, for
  Converge, until its journal is empty and every object synced), capped by ``--converge-cap``;
- ``repair`` (last: ML2/OVN leaves the port missing, which would keep it from converging above):
  ``ovn-nbctl lsp-del`` of a port behind the driver's back, in both stacks at once, NB polled every
  50 ms until the port is back (``--repair-cap``).

Figures only, no assertions; tables in Markdown, to paste into BENCHMARKS.md. Every process is stopped by
its PID at the end, on failure and on Ctrl-C/SIGTERM too.

    .venv/bin/python benchmarks/ovn_side_by_side.py [--ports 100] [--clients 4] [--outage 30] \\
        [--parts latency,active,outage,repair] [--stacks ml2ovn,converge,noop]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import json
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import httpx  # noqa: E402
from common import machine, percentile  # noqa: E402
from sqlalchemy import text  # noqa: E402

from converge.testing.mariadb import MariaDB  # noqa: E402
from converge.testing.neutron import BIN, NeutronStack, owned, stop_process, tail  # noqa: E402
from converge.testing.ovn import OvnControlPlane, OvnDataplane  # noqa: E402
from converge.testing.processes import interrupts  # noqa: E402

# benchmarks/neutron.py, loaded under another name: "neutron" is Neutron's own package.
_spec = importlib.util.spec_from_file_location("bench_neutron", Path(__file__).with_name("neutron.py"))
assert _spec is not None and _spec.loader is not None
bench_neutron = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_neutron)
create_port: Callable[[Any, str, str], tuple[str, float]] = bench_neutron.create_port  # host compute-1
make_network: Callable[[Any, str, str], str] = bench_neutron.network

HOST = "compute-1"  # bench_neutron.create_port binds every port to it; the chassis' hostname
PROJECT = "bench"
ALL_STACKS = ("ml2ovn", "converge", "noop")
ALL_PARTS = ("latency", "active", "outage", "repair")
LABELS = {"ml2ovn": "ML2/OVN", "converge": "Converge on OVN", "noop": "no-op driver"}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# The same ML2 section for all three, but for the mechanism and extension drivers.
ML2_COMMON = {
    "ml2": {"type_drivers": "flat,vlan,geneve", "project_network_types": "geneve",
            "extension_drivers": "port_security"},
    "ml2_type_geneve": {"vni_ranges": "1:65536", "max_header_size": 38},
}


class Failure(SystemExit):
    """A stack could not start or a part could not run: the message carries the log tails."""


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds == seconds else "n/a"  # noqa: PLR0124 - NaN check


def secs(seconds: float | None) -> str:
    return "n/a" if seconds is None or seconds != seconds else f"{seconds:.2f} s"  # noqa: PLR0124


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- NB's database log: one record per committed transaction ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class LogMark:
    inode: int
    size: int


def nb_mark(path: Path) -> LogMark:
    st = path.stat()
    return LogMark(st.st_ino, st.st_size)


def nb_records_since(path: Path, mark: LogMark) -> list[dict[str, Any]] | None:
    """The transactions NB committed since ``mark`` (None if it compacted its file meanwhile: then the
    records before compaction are gone). A standalone ovsdb-server appends one ``OVSDB JSON <len> <sha1>``
    record per committed transaction; a transaction that changes nothing writes none."""
    st = path.stat()
    if st.st_ino != mark.inode or st.st_size < mark.size:
        return None
    records: list[dict[str, Any]] = []
    with open(path, "rb") as f:
        f.seek(mark.size)
        while True:
            header = f.readline()
            if not header:
                break
            if not header.strip():
                continue
            parts = header.split()
            if len(parts) != 4 or parts[:2] != [b"OVSDB", b"JSON"]:
                raise Failure(f"unexpected line in {path}: {header[:80]!r}")
            body = f.read(int(parts[2]))
            if len(body) < int(parts[2]):
                break  # being written
            records.append(json.loads(body))
    return records


def split_writers(records: list[dict[str, Any]]) -> tuple[int, int]:
    """(transactions by northd, by everyone else: the driver, its maintenance, the benchmark's own
    ovn-nbctl); northd's carry the comment "ovn-northd"."""
    northd = sum(1 for r in records if str(r.get("_comment", "")).startswith("ovn-northd"))
    return northd, len(records) - northd


# -- one stack ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Side:
    """One stack under test: its OVN control plane, chassis, Neutron, and the benchmark's clients."""

    name: str
    workdir: Path
    control: OvnControlPlane
    dataplane: OvnDataplane | None = None
    stack: NeutronStack | None = None
    maintenance: subprocess.Popen[bytes] | None = None
    maintenance_log: Path | None = None
    maintenance_launched: float = 0.0  # monotonic
    maintenance_ready_after: float | None = None  # seconds after launch
    cloud: Any = None
    net: str = ""
    ports: list[str] = dataclasses.field(default_factory=list)  # created by the benchmark, in order

    @property
    def label(self) -> str:
        return LABELS[self.name]

    @property
    def writes_nb(self) -> bool:
        return self.name != "noop"

    def lsp_names(self) -> set[str]:
        out = self.control.nbctl("--bare", "--columns=name", "list", "Logical_Switch_Port")
        return {n for n in out.split() if UUID.match(n)}

    def lsp_exists(self, port: str) -> bool:
        return self.control.nbctl("--bare", "--columns=name", "find", "Logical_Switch_Port",
                                  f"name={json.dumps(port)}") == port

    def log_tails(self, lines: int = 40) -> str:
        parts = [f"--- {self.label}: OVN daemons\n{self.control.log_tails(lines)}"]
        if self.stack is not None:
            parts.append(f"--- {self.label}: API log\n{self.stack.api_log_tail(lines)}")
            if self.stack.periodic_workers:
                parts.append(f"--- {self.label}: periodic workers log\n{self.stack.periodic_log_tail(lines)}")
        if self.maintenance_log is not None:
            parts.append(f"--- {self.label}: maintenance worker log\n{tail(self.maintenance_log, lines)}")
        if self.dataplane is not None:
            parts.append(f"--- {self.label}: chassis\n{self.dataplane.log_tails(lines)}")
        return "\n".join(parts)


def stack_arguments(name: str, side: Side) -> dict[str, Any]:
    nb, sb = side.control.nb_tcp, side.control.sb_tcp
    if name == "ml2ovn":
        return dict(mechanism_drivers=["ovn"], service_plugins=["ovn-router"],
                    config={"ovn": {"ovn_nb_connection": nb, "ovn_sb_connection": sb,
                                    "ovn_l3_scheduler": "leastloaded", "ovn_metadata_enabled": False}},
                    ml2_config=ML2_COMMON)
    if name == "converge":
        ml2 = {**ML2_COMMON, "ml2": {**ML2_COMMON["ml2"], "extension_drivers": "port_security,converge"}}
        return dict(mechanism_drivers=["converge"], service_plugins=["converge_router"],
                    config={"converge": {"backend": "ovn", "ovn_nb_connection": nb}}, ml2_config=ml2)
    return dict(mechanism_drivers=["converge_noop"], service_plugins=["router"], config={},
                ml2_config=ML2_COMMON, periodic_workers=False)


def start_side(name: str, work: Path, maria: MariaDB, stack_started: Callable[[Side], None]) -> Side:
    """Control plane, chassis (not for the no-op), Neutron, the maintenance worker (ML2/OVN); the caller
    registers the side for teardown through ``stack_started`` before anything can fail."""
    side = Side(name, work / name, OvnControlPlane(work / name / "ovn"))
    stack_started(side)
    began = time.monotonic()
    side.control.start()
    if side.writes_nb:
        side.dataplane = OvnDataplane(side.control, work / name / "hv", hostname=HOST)
        side.dataplane.start()
    kwargs = stack_arguments(name, side)
    if "tenant_network_type" in inspect.signature(NeutronStack).parameters:
        kwargs["tenant_network_type"] = "geneve"
    side.stack = NeutronStack(work / name / "neutron", mariadb=maria, **kwargs)
    try:
        side.stack.start()
    except Exception as failure:
        raise Failure(f"{side.label}: Neutron did not start: {failure}\n{side.log_tails()}") from failure
    if name == "ml2ovn":
        start_maintenance_worker(side)
    side.cloud = side.stack.connection()
    side.net = make_network(side.cloud, PROJECT, "10.0.0.0/20")
    log(f"{side.label}: up in {time.monotonic() - began:.1f} s ({side.stack.url}, NB {side.control.nb_tcp})")
    return side


def start_maintenance_worker(side: Side) -> None:
    """``neutron-ovn-maintenance-worker`` with the stack's configuration, stopped by PID in teardown."""
    assert side.stack is not None
    side.maintenance_log = side.stack.workdir / "neutron-ovn-maintenance.log"
    side.maintenance_launched = time.monotonic()
    with open(side.maintenance_log, "ab") as out:
        side.maintenance = subprocess.Popen(
            [str(BIN / "neutron-ovn-maintenance-worker"), *side.stack.config_args()], env=side.stack.env(),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_maintenance(side: Side, timeout: float = 180.0) -> None:
    """Until the maintenance worker logs that its maintenance thread started (after its start-up sync)."""
    assert side.maintenance is not None and side.maintenance_log is not None
    began = side.maintenance_launched
    while time.monotonic() - began < timeout:
        if side.maintenance.poll() is not None:
            raise Failure(f"neutron-ovn-maintenance-worker exited with {side.maintenance.returncode}\n"
                          f"{tail(side.maintenance_log)}")
        if b"Maintenance task thread has started" in side.maintenance_log.read_bytes():
            side.maintenance_ready_after = time.monotonic() - began
            return
        time.sleep(0.5)
    raise Failure(f"neutron-ovn-maintenance-worker: no maintenance thread after {timeout:.0f} s\n"
                  f"{tail(side.maintenance_log)}")


def maintenance_status(side: Side) -> str:
    if side.maintenance is None:
        return "not started"
    alive = side.maintenance.poll() is None
    seen = (side.maintenance_log is not None
            and b"Maintenance task thread has started" in side.maintenance_log.read_bytes())
    tasks = (side.maintenance_log.read_text(errors="replace").count("OVN maintenance task ")
             if side.maintenance_log else 0)
    return (f"`neutron-ovn-maintenance-worker` pid {side.maintenance.pid}: "
            f"{'running' if alive else f'EXITED ({side.maintenance.returncode})'}; "
            f"'Maintenance task thread has started' {'logged' if seen else 'NOT logged'}"
            + (f" {side.maintenance_ready_after:.0f} s after launch" if side.maintenance_ready_after else "")
            + f"; {tasks} maintenance task runs logged so far")


def wait_in_nb(side: Side, ports: list[str], timeout: float) -> float | None:
    """Seconds until every port in ``ports`` is a Logical_Switch_Port in NB, or None after ``timeout``."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if set(ports) <= side.lsp_names():
            return time.monotonic() - began
        time.sleep(0.1)
    return None


# -- part 1: latency and NB transactions --------------------------------------------------------------------


def stack_order(sides: list[Side], round_no: int, how: str, coin: random.Random) -> list[Side]:
    if how == "rotate":
        k = round_no % len(sides)
        return sides[k:] + sides[:k]
    order = list(sides)
    coin.shuffle(order)
    return order


def settle(sides: list[Side], ports: dict[str, list[str]], timeout: float = 120.0) -> None:
    """Until every stack that writes NB has its ports there, then 2 s for northd's answers."""
    for side in sides:
        if side.writes_nb and wait_in_nb(side, ports[side.name], timeout) is None:
            raise Failure(f"{side.label}: ports not in NB {timeout:.0f} s after their creation\n{side.log_tails()}")
    time.sleep(2.0)


def part_latency(sides: list[Side], args: argparse.Namespace) -> list[str]:
    coin = random.Random(args.seed)
    log(f"latency: {args.warmup} warm-up creates per stack")
    warm: dict[str, list[str]] = {s.name: [] for s in sides}
    for _ in range(args.warmup):
        for side in stack_order(sides, 0, args.order, coin):
            warm[side.name].append(create_port(side.cloud, PROJECT, side.net)[0])
    settle(sides, warm)

    # Sequential: one create per stack per round.
    marks = {s.name: nb_mark(s.control.nb_db) for s in sides}
    seq: dict[str, list[float]] = {s.name: [] for s in sides}
    made: dict[str, list[str]] = {s.name: [] for s in sides}
    log(f"latency: {args.ports} sequential creates per stack, order {args.order}")
    for round_no in range(args.ports):
        for side in stack_order(sides, round_no, args.order, coin):
            port, took = create_port(side.cloud, PROJECT, side.net)
            seq[side.name].append(took)
            made[side.name].append(port)
    settle(sides, made)
    seq_txns = {s.name: nb_records_since(s.control.nb_db, marks[s.name]) for s in sides}

    # Concurrent: a burst of `clients` threads x `burst` creates per stack per round.
    clients = {s.name: [s.stack.connection() for _ in range(args.clients)] for s in sides if s.stack}
    conc: dict[str, list[float]] = {s.name: [] for s in sides}
    busy: dict[str, float] = {s.name: 0.0 for s in sides}
    made_c: dict[str, list[str]] = {s.name: [] for s in sides}
    marks = {s.name: nb_mark(s.control.nb_db) for s in sides}
    per_round = args.clients * args.burst
    rounds = -(-args.ports // per_round)
    log(f"latency: {rounds * per_round} creates per stack by {args.clients} concurrent clients "
        f"({rounds} rounds of {args.clients} x {args.burst} per stack)")
    for round_no in range(rounds):
        for side in stack_order(sides, round_no, args.order, coin):
            lock = threading.Lock()
            errors: list[BaseException] = []

            def client(cloud: Any, side: Side = side, lock: threading.Lock = lock,
                       errors: list[BaseException] = errors) -> None:
                try:
                    for _ in range(args.burst):
                        port, took = create_port(cloud, PROJECT, side.net)
                        with lock:
                            conc[side.name].append(took)
                            made_c[side.name].append(port)
                except BaseException as err:  # noqa: BLE001 - reported below
                    errors.append(err)

            threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in clients[side.name]]
            began = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            busy[side.name] += time.monotonic() - began
            if errors:
                raise Failure(f"{side.label}: a concurrent create failed: {errors[0]!r}\n{side.log_tails()}")
    settle(sides, made_c)
    conc_txns = {s.name: nb_records_since(s.control.nb_db, marks[s.name]) for s in sides}
    for side in sides:
        side.ports += warm[side.name] + made[side.name] + made_c[side.name]

    base_seq = median(seq["noop"]) if "noop" in seq else float("nan")
    base_conc = median(conc["noop"]) if "noop" in conc else float("nan")
    out = [f"### Port create latency, sequential ({args.ports} per stack, one per stack per round, "
           f"order {describe_order(args)}; {args.warmup} warm-up creates each before)", "",
           "| stack | median | p90 | max | median / no-op median | p90 / no-op p90 |", "|---|---|---|---|---|---|"]
    for side in sides:
        v = seq[side.name]
        out.append(f"| {side.label} | {ms(median(v))} | {ms(percentile(v, 90))} | {ms(max(v))} | "
                   f"{ratio(median(v), base_seq)} | "
                   f"{ratio(percentile(v, 90), percentile(seq['noop'], 90) if 'noop' in seq else float('nan'))} |")
    out += ["", f"### Port create latency, {args.clients} concurrent clients ({rounds * per_round} per stack: "
            f"{rounds} rounds, each a burst of {args.clients} clients x {args.burst} creates per stack, "
            f"order {describe_order(args)})", "",
            "| stack | median | p90 | max | median / no-op median | p90 / no-op p90 | creates/s in bursts |",
            "|---|---|---|---|---|---|---|"]
    for side in sides:
        v = conc[side.name]
        out.append(f"| {side.label} | {ms(median(v))} | {ms(percentile(v, 90))} | {ms(max(v))} | "
                   f"{ratio(median(v), base_conc)} | "
                   f"{ratio(percentile(v, 90), percentile(conc['noop'], 90) if 'noop' in conc else float('nan'))} | "
                   f"{len(v) / busy[side.name]:.1f} |")
    out += ["", "### NB transactions per port create",
            "",
            "Counted in NB's database file: a standalone ovsdb-server appends exactly one record per committed "
            "transaction (none for one that changes nothing); northd's carry the comment `ovn-northd`, the "
            "rest are the Neutron side's (driver, maintenance). Window: from just before the first measured "
            "create until every port is in NB, plus 2 s.", "",
            "| stack | creates | Neutron-side txns | per port | northd txns | per port |", "|---|---|---|---|---|---|"]
    for label, txns, count in (("sequential", seq_txns, args.ports), (f"{args.clients} clients", conc_txns,
                                                                      rounds * per_round)):
        for side in sides:
            records = txns[side.name]
            if records is None:
                out.append(f"| {side.label} ({label}) | {count} | NB compacted its file during the window | | | |")
                continue
            northd, neutron = split_writers(records)
            out.append(f"| {side.label} ({label}) | {count} | {neutron} | {neutron / count:.2f} | {northd} | "
                       f"{northd / count:.2f} |")
    return out


def ratio(value: float, base: float) -> str:
    return "n/a" if base != base or value != value or not base else f"{value / base:.3f}"  # noqa: PLR0124


def describe_order(args: argparse.Namespace) -> str:
    return f"seeded shuffle per round, seed {args.seed}" if args.order == "shuffled" else "rotated per round"


# -- part 2: create -> ACTIVE -----------------------------------------------------------------------------------


def part_active(sides: list[Side], args: argparse.Namespace) -> list[str]:
    coin = random.Random(args.seed + 1)
    live = [s for s in sides if s.writes_nb]
    post_to_active: dict[str, list[float]] = {s.name: [] for s in live}
    plug_to_active: dict[str, list[float]] = {s.name: [] for s in live}
    never: dict[str, int] = {s.name: 0 for s in live}
    log(f"active: {args.active_ports} ports per stack, each plugged into the stack's chassis")
    for round_no in range(args.active_ports):
        for side in stack_order(live, round_no, args.order, coin):
            assert side.dataplane is not None
            began = time.monotonic()
            port = side.cloud.network.create_port(**owned(PROJECT, network_id=side.net, binding_host_id=HOST))
            side.ports.append(str(port.id))
            ip = port.fixed_ips[0]["ip_address"]
            side.dataplane.add_vm(f"vm{round_no}", str(port.id), port.mac_address, f"{ip}/20")
            plugged = time.monotonic()
            deadline = plugged + args.active_cap
            while time.monotonic() < deadline:
                if side.cloud.network.get_port(port.id).status == "ACTIVE":
                    now = time.monotonic()
                    post_to_active[side.name].append(now - began)
                    plug_to_active[side.name].append(now - plugged)
                    break
                time.sleep(0.02)
            else:
                never[side.name] += 1
    out = [f"### Port create -> ACTIVE ({args.active_ports} ports per stack; a namespace plugged into the "
           f"stack's chassis `{HOST}` with iface-id = port id right after the 201; GET every 20 ms, "
           f"cap {args.active_cap:.0f} s)", "",
           "| stack | POST -> ACTIVE median | p90 | max | plugged -> ACTIVE median | not ACTIVE within cap |",
           "|---|---|---|---|---|---|"]
    for side in live:
        v, w = post_to_active[side.name], plug_to_active[side.name]
        out.append(f"| {side.label} | {ms(median(v))} | {ms(percentile(v, 90))} | {ms(max(v) if v else float('nan'))} "
                   f"| {ms(median(w))} | {never[side.name]} |")
    if any(s.name == "noop" for s in sides):
        out.append("| no-op driver | n/a: nothing reports its ports up, they stay DOWN | | | | |")
    return out


# -- part 3: out-of-band deletion ---------------------------------------------------------------------------


def part_repair(sides: list[Side], args: argparse.Namespace) -> list[str]:
    live = [s for s in sides if s.writes_nb]
    results: dict[str, float | None] = {}

    def watch(side: Side, port: str) -> None:
        side.control.nbctl("lsp-del", port)
        began = time.monotonic()
        while time.monotonic() - began < args.repair_cap:
            if side.lsp_exists(port):
                results[side.name] = time.monotonic() - began
                return
            time.sleep(0.05)
        results[side.name] = None

    threads = []
    for side in live:
        port = next((p for p in reversed(side.ports) if side.lsp_exists(p)), None)
        if port is None:
            port = create_port(side.cloud, PROJECT, side.net)[0]
            side.ports.append(port)
            if wait_in_nb(side, [port], 60) is None:
                raise Failure(f"{side.label}: a new port is not in NB after 60 s\n{side.log_tails()}")
        threads.append(threading.Thread(target=watch, args=(side, port), daemon=True))
    log(f"repair: one LSP deleted behind each driver's back, waiting up to {args.repair_cap:.0f} s")
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = [f"### Out-of-band deletion repaired (`ovn-nbctl lsp-del <port>` in NB, NB polled every 50 ms, "
           f"cap {args.repair_cap:.0f} s; both stacks at once)", "",
           "| stack | LSP back in NB after |", "|---|---|"]
    for side in live:
        got = results.get(side.name)
        text = secs(got) if got is not None else f"not repaired within {args.repair_cap:.0f} s"
        out.append(f"| {side.label} | {text} |")
    return out


# -- part 4: NB outage ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Calls:
    """Outcomes of one client's calls in one phase."""

    ok: list[float] = dataclasses.field(default_factory=list)
    failed: list[tuple[float, str]] = dataclasses.field(default_factory=list)
    timed_out: int = 0
    in_flight_at_nb_back: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)  # several clients share one

    def summary(self) -> str:
        text = f"{len(self.ok)} ok / {len(self.failed)} failed / {self.timed_out} timed out"
        if self.failed:
            kinds: dict[str, int] = {}
            for _, what in self.failed:
                kinds[what] = kinds.get(what, 0) + 1
            text += " (" + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())) + ")"
        return text

    def latencies(self) -> str:
        every = self.ok + [t for t, _ in self.failed]
        if not every:
            return "n/a"
        return f"{ms(median(self.ok))} / {ms(max(every))}"


def drive(url: str, net: str, create: bool, until: float, calls: Calls, timeout: float, pause: float,
          waiting: threading.Event) -> None:
    """Calls the API until ``until`` (monotonic): port creates or GET port lists, one at a time."""
    client = httpx.Client(timeout=httpx.Timeout(timeout, connect=5.0))
    try:
        while time.monotonic() < until:
            began = time.monotonic()
            failed_before = len(calls.failed)
            waiting.set()
            try:
                if create:
                    answer = client.post(f"{url}/v2.0/ports", json={"port": {
                        "project_id": PROJECT, "network_id": net, "binding:host_id": HOST}})
                else:
                    answer = client.get(f"{url}/v2.0/ports", params={"network_id": net, "fields": "id"})
                took = time.monotonic() - began
                with calls.lock:
                    if answer.status_code < 300:
                        calls.ok.append(took)
                    else:
                        calls.failed.append((took, f"HTTP {answer.status_code}"))
            except httpx.TimeoutException:
                with calls.lock:
                    calls.timed_out += 1
            except httpx.TransportError as err:
                with calls.lock:
                    calls.failed.append((time.monotonic() - began, type(err).__name__))
            finally:
                waiting.clear()
            # a failing call must not turn the client into a busy loop
            time.sleep(pause if len(calls.failed) == failed_before else max(pause, 0.2))
    finally:
        client.close()


def neutron_port_ids(side: Side) -> set[str]:
    assert side.stack is not None
    answer = httpx.get(f"{side.stack.url}/v2.0/ports", params={"fields": "id"}, timeout=30)
    answer.raise_for_status()
    return {p["id"] for p in answer.json()["ports"]}


def converge_backlog(side: Side) -> tuple[int, int]:
    """(journal rows, objects not synced) in the Converge stack's intent store (Neutron's database)."""
    from converge.store import db  # noqa: PLC0415

    assert side.stack is not None
    engine = db.make_engine(side.stack.db_url, pool_size=1)
    try:
        with engine.connect() as conn:
            journal = conn.execute(text("SELECT COUNT(*) FROM converge_journal")).scalar_one()
            unsynced = conn.execute(text("SELECT COUNT(*) FROM converge_status WHERE state <> 'synced'")).scalar_one()
    finally:
        engine.dispose()
    return int(journal), int(unsynced)


def part_outage(sides: list[Side], args: argparse.Namespace) -> list[str]:
    before = args.before if args.before is not None else min(args.outage, 30.0)
    phases = (f"NB up ({before:.0f} s before)", f"NB down {args.outage:.0f} s")
    results: dict[tuple[str, str, str], Calls] = {}
    nb_back_at = 0.0
    for phase in phases:
        down = phase != phases[0]
        if down:
            log(f"outage: stopping NB of every stack for {args.outage:.0f} s")
            for side in sides:
                side.control.stop_nb()
        else:
            log(f"outage: {before:.0f} s of creates and lists with NB up")
        until = time.monotonic() + (args.outage if down else before)
        threads = []
        flags: list[tuple[str, str, threading.Event]] = []
        for side in sides:
            assert side.stack is not None
            clients = [("create", True, 0.0)] * args.outage_creators + [("list", False, 1.0)]
            for kind, create, pause in clients:
                calls = results.setdefault((side.name, phase, kind), Calls())
                flags.append((side.name, kind, threading.Event()))
                threads.append(threading.Thread(target=drive, daemon=True, args=(
                    side.stack.url, side.net, create, until, calls, args.call_timeout, pause, flags[-1][2])))
        for t in threads:
            t.start()
        time.sleep(max(0.0, until - time.monotonic()))
        if down:
            for name, kind, flag in flags:
                results[(name, phase, kind)].in_flight_at_nb_back += int(flag.is_set())
            log("outage: starting NB again")
            for side in sides:
                side.control.start_nb()
            nb_back_at = time.monotonic()
        deadline = time.monotonic() + args.call_timeout + 10
        for t in threads:
            t.join(max(0.1, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            raise Failure("outage: a client is still waiting past its timeout")
    log(f"outage: NB back; waiting up to {args.converge_cap:.0f} s for every stack to converge")

    in_nb: dict[str, float] = {}  # seconds after NB came back: every Neutron port in NB, nothing else
    synced: dict[str, float] = {}  # Converge: journal empty and every object synced
    pending = [s for s in sides if s.writes_nb]
    while pending and time.monotonic() - nb_back_at < args.converge_cap:
        for side in list(pending):
            now = time.monotonic() - nb_back_at
            if side.name not in in_nb and neutron_port_ids(side) == side.lsp_names():
                in_nb[side.name] = now
            if side.name == "converge" and side.name not in synced and converge_backlog(side) == (0, 0):
                synced[side.name] = now
            if side.name in in_nb and (side.name != "converge" or side.name in synced):
                pending.remove(side)
        time.sleep(0.25)
    state: dict[str, str] = {}
    for side in sides:
        if side.writes_nb:
            ids, lsps = neutron_port_ids(side), side.lsp_names()
            state[side.name] = f"{len(ids)} / {len(lsps)}"
            if side.name not in in_nb:
                state[side.name] += f" ({len(ids - lsps)} ports missing in NB, {len(lsps - ids)} LSPs not in Neutron)"
            if side.name == "converge":
                journal, unsynced = converge_backlog(side)
                state[side.name] += f"; journal {journal} rows, {unsynced} objects not synced"

    creators = ("one client creating ports one after another" if args.outage_creators == 1 else
                f"{args.outage_creators} clients each creating ports one after another")
    out = [f"### Northbound DB down {args.outage:.0f} s (every stack at once: {creators}, one listing the "
           f"network's ports every second; client timeout {args.call_timeout:.0f} s; no call starts after the "
           f"window; the API has 2 worker processes x 1 thread)", "",
           "| stack | phase | creates: ok / failed / timed out | create median / max | "
           "lists: ok / failed / timed out | list median / max | call in flight when NB came back |",
           "|---|---|---|---|---|---|---|"]
    for side in sides:
        for phase in phases:
            c, g = results[(side.name, phase, "create")], results[(side.name, phase, "list")]
            waiting = (f"{c.in_flight_at_nb_back} create, {g.in_flight_at_nb_back} list"
                       if phase != phases[0] else "")
            out.append(f"| {side.label} | {phase} | {c.summary()} | {c.latencies()} | {g.summary()} | "
                       f"{g.latencies()} | {waiting} |")
    out += ["", "\"timed out\": no answer within the client timeout. Latencies: median of the successful "
            "calls / the longest call that got an answer.", "",
            f"After NB came back: time until every Neutron port is a Logical_Switch_Port in NB and nothing "
            f"else is (Converge: and its journal is empty and every object synced), cap "
            f"{args.converge_cap:.0f} s.", "",
            "| stack | every Neutron port in NB, nothing else | Converge: journal empty, all synced | "
            "at the end: Neutron ports / LSPs |", "|---|---|---|---|"]
    never = f"not within {args.converge_cap:.0f} s"
    for side in sides:
        if side.writes_nb:
            store = (f"{synced[side.name]:.1f} s" if side.name in synced else never) if side.name == "converge" else ""
            got = f"{in_nb[side.name]:.1f} s" if side.name in in_nb else never
            out.append(f"| {side.label} | {got} | {store} | {state[side.name]} |")
        else:
            out.append(f"| {side.label} | n/a (writes nothing to NB) | | |")
    return out


# -- main -----------------------------------------------------------------------------------------------------


def versions() -> str:
    def first_line(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    from importlib.metadata import version  # noqa: PLC0415

    return (f"Neutron {version('neutron')}, ovsdbapp {version('ovsdbapp')}, {first_line('ovn-nbctl', '--version')}, "
            f"{first_line('ovsdb-server', '--version')}, {first_line('mariadbd', '--version')}")


def teardown(sides: list[Side], maria: MariaDB | None) -> None:
    """Every process the script started, by PID: maintenance worker, Neutron, chassis, control plane,
    MariaDB; each step runs even if an earlier one fails."""
    for side in reversed(sides):
        for step in (lambda s=side: stop_process(s.maintenance), lambda s=side: s.stack and s.stack.stop(),
                     lambda s=side: s.dataplane and s.dataplane.stop(), lambda s=side: s.control.stop()):
            try:
                step()
            except Exception as err:  # noqa: BLE001 - the rest must still stop
                log(f"teardown of {side.label}: {err!r}")
    if maria is not None:
        maria.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ports", type=int, default=100, help="measured creates per stack, sequential and concurrent")
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients of the concurrent measure")
    ap.add_argument("--burst", type=int, default=5, help="creates per client per round of the concurrent measure")
    ap.add_argument("--warmup", type=int, default=10, help="warm-up creates per stack")
    ap.add_argument("--outage", type=float, default=30.0, help="seconds NB is down (and of the before phase)")
    ap.add_argument("--before", type=float, default=None,
                    help="seconds of the outage part's phase with NB up (default: --outage, at most 30)")
    ap.add_argument("--outage-creators", type=int, default=2,
                    help="clients creating ports during the outage part (2 = the API's worker processes: "
                         "each create ML2/OVN holds while NB is down holds a worker)")
    ap.add_argument("--call-timeout", type=float, default=150.0, help="client timeout of each call in the outage")
    ap.add_argument("--converge-cap", type=float, default=150.0,
                    help="longest wait for convergence after NB is back")
    ap.add_argument("--repair-cap", type=float, default=120.0,
                    help="longest wait for an out-of-band deleted port to come back (ML2/OVN does not "
                         "repair it: 400 s to show it)")
    ap.add_argument("--active-ports", type=int, default=10, help="ports per stack of the create -> ACTIVE part")
    ap.add_argument("--active-cap", type=float, default=60.0, help="longest wait for a port to turn ACTIVE")
    ap.add_argument("--parts", default=",".join(ALL_PARTS), help=f"comma-separated subset of {','.join(ALL_PARTS)}")
    ap.add_argument("--stacks", default=",".join(ALL_STACKS), help=f"comma-separated subset of {','.join(ALL_STACKS)}")
    ap.add_argument("--order", choices=["shuffled", "rotate"], default="shuffled",
                    help="order of the stacks in each round: a seeded shuffle (default) or rotated")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs) after the run")
    args = ap.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    names = [n for n in args.stacks.split(",") if n]
    if bad := [p for p in parts if p not in ALL_PARTS] + [n for n in names if n not in ALL_STACKS]:
        ap.error(f"unknown part or stack: {', '.join(bad)}")
    names = [n for n in ALL_STACKS if n in names]

    command = shlex.join([".venv/bin/python", "benchmarks/ovn_side_by_side.py", *sys.argv[1:]])
    header = [f"## Side by side on OVN: {', '.join(LABELS[n] for n in names)}", "",
              f"- command: `{command}`", f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
              f"- machine: {machine()}; load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
              f"- software: {versions()}",
              "- each stack: a fresh OVN control plane (NB, SB, northd) and a fresh Neutron database (one "
              "MariaDB for all, durable), the API under uWSGI (2 processes x 1 thread), geneve project "
              "networks; ML2/OVN and Converge each with a chassis `compute-1` (userspace datapath)"]
    tmp = tempfile.mkdtemp(prefix="cvg-sbs-", dir="/tmp")  # short: unix socket paths
    work = Path(tmp)
    log(f"work directory {work}")
    sides: list[Side] = []
    maria: MariaDB | None = None
    body: list[str] = []
    failed = True
    try:
        with interrupts():
            maria = MariaDB(work / "mariadb")
            maria.start()
            for name in names:
                start_side(name, work, maria, sides.append)
            for side in sides:
                if side.name == "ml2ovn":
                    wait_maintenance(side)
            # The outage before the repair: the port ML2/OVN never puts back would keep it from converging.
            for part, run in (("latency", part_latency), ("active", part_active), ("outage", part_outage),
                              ("repair", part_repair)):
                if part in parts:
                    body += ["", *run(sides, args)]
            header += [f"- ML2/OVN maintenance worker at the end: {maintenance_status(s)}"
                       for s in sides if s.name == "ml2ovn"]
            header += [f"- ML2/OVN periodic workers / API at the end: {s.stack.running()}"
                       for s in sides if s.name == "ml2ovn" and s.stack]
            failed = False
    finally:
        teardown(sides, maria)
        if failed or args.keep:
            log(f"logs kept in {work}")
        else:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    print("\n".join(header + body))


if __name__ == "__main__":
    main()
