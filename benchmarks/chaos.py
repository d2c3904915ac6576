"""Chaos: a steady mixed workload through Neutron's API while faults are injected, one at a time and then
together, on the scale-out stack (``converge.testing.scaleout``: 3-node Galera, two API servers, two
periodic workers with Converge's sync workers, one standalone agent, the fabric controller).

Four clients (openstacksdk, one project each, alternating between the two API servers per call) create,
update and delete networks, subnets, ports, routers, interfaces, floating IPs, security groups and rules.
Each phase runs the workload for ``--phase`` seconds with its fault injected after a third of it and lifted
(or not, for one-shot faults) after another third; then the clients stop and the stack must converge.
After each phase:

- every call that answered 2xx is in Neutron (created and not deleted: present; deleted: absent);
- Neutron = intent (what ``converge adopt`` would record equals the store) = controller (every root's ETag
  equals the fingerprint of its desired objects);
- no write by a worker that had lost its lease (the controller's audit: no applied batch with an epoch
  below one already applied to its root);
- no full resync: operations applied during the phase, against the objects changed and drifted.

Reported per phase: API calls and success rate during the fault, p50/p99 latency during it, seconds to
converge after the workload stopped, takeover time after a worker's death, operations applied.

    .venv/bin/python benchmarks/chaos.py [--phase 30] [--faults all] [--seed 1]

``--backend ovn`` runs the same against OVN's Northbound DB (NB stopped, wiped, rows deleted and edited
with ovn-nbctl; NB keeps no audit log, so stale writes and operations are not counted there).

Faults: galera-node, api-server, worker-kill, worker-stop, controller-down, controller-wipe, drift,
together. ``tests/functional/test_chaos.py`` runs a subset with short phases.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, this folder comes first on sys.path, and its neutron.py would hide Neutron's package.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from converge.backends.base import Backend  # noqa: E402
from converge.backends.fabric import FabricClient  # noqa: E402
from converge.backends.ovn import OvnBackend  # noqa: E402
from converge.neutron.adopt import attached_interfaces, differences, neutron_intent  # noqa: E402
from converge.store import db  # noqa: E402
from converge.store.schema import desired, journal, roots, status, workers  # noqa: E402
from converge.testing.scaleout import ScaleOut  # noqa: E402

sys.path.append(str(HERE))  # appended once Neutron's package is imported (see above)
from common import differing_roots, percentile, report  # noqa: E402

EXTERNAL_CIDR = "198.51.100.0/24"
FAILED = object()
PROJECTS = 4


@dataclass
class Call:
    op: str
    ok: bool
    status: int | None
    started: float
    took: float
    error: str | None = None


@dataclass
class Ledger:
    """What one client knows from the answers it got: resources whose create answered 2xx and were not
    deleted since (``live``), those whose delete answered 2xx (``gone``), and those a call without an
    answer may or may not have changed (``unsure``: never checked)."""

    live: dict[str, set[str]] = field(default_factory=dict)  # collection -> ids
    gone: dict[str, set[str]] = field(default_factory=dict)
    unsure: set[str] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)

    def add(self, collection: str, oid: str) -> None:
        self.live.setdefault(collection, set()).add(oid)

    def remove(self, collection: str, oid: str) -> None:
        self.live.get(collection, set()).discard(oid)
        self.gone.setdefault(collection, set()).add(oid)

    def ids(self, collection: str) -> list[str]:
        return sorted(self.live.get(collection, set()) - self.unsure)


class Client(threading.Thread):
    """One project's steady workload, alternating between the API servers per call."""

    def __init__(self, n: int, conns: list[Any], external: str, seed: int) -> None:
        super().__init__(name=f"chaos-client-{n}", daemon=True)
        self.project = f"chaos-{n}"
        self.cycle = itertools.cycle(conns)
        self.external = external
        self.rng = random.Random(seed * 100 + n)
        self.ledger = Ledger()
        self.running = threading.Event()
        self.stopping = threading.Event()
        self.idle = threading.Event()
        self.subnet_of: dict[str, str] = {}  # network -> its subnet
        self.routed: set[str] = set()  # subnets with a router interface
        self.serial = itertools.count()

    # -- the calls -------------------------------------------------------------------------------------
    def call(self, op: str, action: Callable[[Any], Any], touches: str | None = None) -> Any:
        """Run one API call on the next server; its answer, or FAILED (the call is in the ledger)."""
        conn = next(self.cycle)
        started = time.monotonic()
        try:
            result = action(conn)
        except Exception as err:  # noqa: BLE001 - every failure is a figure, none stops the workload
            status = getattr(err, "status_code", None)
            self.ledger.calls.append(Call(op, False, status, started, time.monotonic() - started,
                                          f"{type(err).__name__}: {str(err)[:200]}"))
            if touches is not None and (status is None or status >= 500):
                self.ledger.unsure.add(touches)  # may or may not have happened
            return FAILED
        self.ledger.calls.append(Call(op, True, 200, started, time.monotonic() - started))
        return result

    def name(self, what: str) -> str:
        return f"{what}-{next(self.serial)}"

    def create_network(self) -> None:
        net = self.call("network create", lambda c: c.network.create_network(
            project_id=self.project, name=self.name("net")))
        if net is FAILED:
            return
        self.ledger.add("networks", net.id)
        cidr = f"10.{int(self.project.split('-')[1])}.{len(self.subnet_of) % 250}.0/24"
        sub = self.call("subnet create", lambda c: c.network.create_subnet(
            project_id=self.project, network_id=net.id, ip_version=4, cidr=cidr, name=self.name("sub")))
        if sub is not FAILED:
            self.ledger.add("subnets", sub.id)
            self.subnet_of[net.id] = sub.id

    def create_port(self) -> None:
        nets = [n for n in self.ledger.ids("networks") if n in self.subnet_of]
        if not nets:
            return self.create_network()
        net = self.rng.choice(nets)
        port = self.call("port create", lambda c: c.network.create_port(
            project_id=self.project, network_id=net, name=self.name("port"),
            binding_host_id="chaos-host"))
        if port is not FAILED:
            self.ledger.add("ports", port.id)
        return None

    def update_port(self) -> None:
        ports = self.ledger.ids("ports")
        if ports:
            port = self.rng.choice(ports)
            self.call("port update", lambda c: c.network.update_port(port, name=self.name("renamed")), port)

    def delete_port(self) -> None:
        ports = self.ledger.ids("ports")
        if len(ports) > 3:
            port = self.rng.choice(ports)
            gone = self.call("port delete", lambda c: c.network.delete_port(port, ignore_missing=False), port)
            if gone is not FAILED:
                self.ledger.remove("ports", port)

    def security_group(self) -> None:
        sg = self.call("sg create", lambda c: c.network.create_security_group(
            project_id=self.project, name=self.name("sg")))
        if sg is FAILED:
            return
        self.ledger.add("security_groups", sg.id)
        for rule in sg.security_group_rules or ():
            self.ledger.add("security_group_rules", rule["id"])
        port = self.rng.randrange(1024, 65000)
        made = self.call("sg rule create", lambda c: c.network.create_security_group_rule(
            project_id=self.project, security_group_id=sg.id, direction="ingress", ethertype="IPv4",
            protocol="tcp", port_range_min=port, port_range_max=port))
        if made is not FAILED:
            self.ledger.add("security_group_rules", made.id)

    def delete_rule(self) -> None:
        # Only the rules this client made with a port range (not a group's default egress rules).
        rules = self.ledger.ids("security_group_rules")
        if rules:
            rule = self.rng.choice(rules)
            if self.call("sg rule delete", lambda c: c.network.delete_security_group_rule(rule, ignore_missing=False),
                         rule) is not FAILED:
                self.ledger.remove("security_group_rules", rule)

    def router(self) -> None:
        subnets = [s for n, s in self.subnet_of.items() if s not in self.routed and n in self.ledger.ids("networks")]
        if not subnets:
            return self.create_network()
        router = self.call("router create", lambda c: c.network.create_router(
            project_id=self.project, name=self.name("router"),
            external_gateway_info={"network_id": self.external}))
        if router is FAILED:
            return None
        self.ledger.add("routers", router.id)
        subnet = subnets[0]
        if self.call("interface add", lambda c: c.network.add_interface_to_router(router, subnet_id=subnet),
                     subnet) is not FAILED:
            self.routed.add(subnet)
        return None

    def floating_ip(self) -> None:
        if not self.routed:
            return self.router()
        fips = self.ledger.ids("floatingips")
        if len(fips) > 2 and self.rng.random() < 0.5:
            fip = self.rng.choice(fips)
            if self.call("fip delete", lambda c: c.network.delete_ip(fip, ignore_missing=False), fip) is not FAILED:
                self.ledger.remove("floatingips", fip)
            return None
        made = self.call("fip create", lambda c: c.network.create_ip(
            project_id=self.project, floating_network_id=self.external))
        if made is not FAILED:
            self.ledger.add("floatingips", made.id)
        return None

    def rename_network(self) -> None:
        nets = self.ledger.ids("networks")
        if nets:
            net = self.rng.choice(nets)
            self.call("network update", lambda c: c.network.update_network(net, name=self.name("net")), net)

    # -- the loop ---------------------------------------------------------------------------------------
    def run(self) -> None:
        ops = [(self.create_port, 6), (self.update_port, 3), (self.delete_port, 2), (self.security_group, 1),
               (self.delete_rule, 1), (self.router, 1), (self.floating_ip, 1), (self.rename_network, 1),
               (self.create_network, 1)]
        population = [op for op, weight in ops for _ in range(weight)]
        while not self.stopping.is_set():
            if not self.running.is_set():
                self.idle.set()
                self.running.wait(0.2)
                continue
            self.idle.clear()
            self.rng.choice(population)()


# -- checks ---------------------------------------------------------------------------------------------

def answered_calls_hold(conn: Any, clients: list[Client]) -> list[str]:
    """Every 2xx answer is in Neutron: what was created and not deleted is there, what was deleted is not."""
    wrong: list[str] = []
    for client in clients:
        for collection in ("networks", "subnets", "ports", "security_groups", "security_group_rules",
                           "routers", "floatingips"):
            there = {i["id"] for i in conn.network.get(f"/{collection}?project_id={client.project}").json()[collection]}
            live = client.ledger.live.get(collection, set()) - client.ledger.unsure
            gone = client.ledger.gone.get(collection, set()) - client.ledger.unsure
            wrong += [f"{collection} {i} answered 2xx but is missing" for i in sorted(live - there)]
            wrong += [f"{collection} {i} deleted (2xx) but still there" for i in sorted(gone & there)]
    return wrong


class FabricSide:
    """The reference controller's faults and audit log."""

    def __init__(self, stack: ScaleOut) -> None:
        self.fabric = stack.fabric
        self.backend: Backend = FabricClient([self.fabric.url], self.fabric.token, writer="chaos-check")

    def down(self) -> None:
        self.fabric.stop()

    def up(self) -> None:
        self.fabric.start()

    def wipe(self) -> None:
        self.fabric.admin("POST", "/v1/admin/wipe")

    def drift(self) -> None:
        self.fabric.admin("POST", "/v1/admin/drop", {"count": 50})
        self.fabric.admin("POST", "/v1/admin/corrupt", {"count": 50})

    def mark(self) -> int:
        entries = self.fabric.audit()
        return int(entries[-1]["seq"]) if entries else 0

    def applied_since(self, mark: int) -> int | None:
        return sum(int(e["operations"]) for e in self.fabric.audit(after=mark)
                   if e["status"] == 200 and not str(e["writer"]).startswith("fault:"))

    def stale_writes(self) -> list[str] | None:
        return [f"stale write on {root}: {w}" for root, ws in self.fabric.stale_writes().items() for w in ws
                if not w.after_wipe]


class OvnSide:
    """OVN's NB: stopped and started by PID, wiped, rows deleted and edited with ovn-nbctl. NB keeps no
    audit log: stale writes are fenced by the marker rows' epochs (tested in test_ovn_backend.py) but not
    counted here, nor the operations applied."""

    def __init__(self, stack: ScaleOut) -> None:
        assert stack.ovn is not None
        self.ovn = stack.ovn
        self.backend = OvnBackend([self.ovn.nb_tcp], timeout=30.0, writer="chaos-check")
        deadline = time.monotonic() + 60
        while not self.backend.connected() and time.monotonic() < deadline:
            time.sleep(0.05)

    def down(self) -> None:
        self.ovn.stop_nb()

    def up(self) -> None:
        self.ovn.start_nb()

    def wipe(self) -> None:
        self.ovn.wipe_nb()

    def drift(self) -> None:
        names = self.ovn.nbctl("--bare", "--columns=name", "list", "Logical_Switch_Port").split()
        picked = random.Random(7).sample(names, min(50, len(names)))
        for name in picked[:len(picked) // 2]:
            self.ovn.nbctl("lsp-del", name)
        for i, name in enumerate(picked[len(picked) // 2:], 1):  # addresses NB accepts: unique ones
            self.ovn.nbctl("lsp-set-addresses", name, f"fa:16:3e:ff:00:{i:02x} 10.255.0.{i}")

    def mark(self) -> int:
        return 0

    def applied_since(self, mark: int) -> int | None:
        return None

    def stale_writes(self) -> list[str] | None:
        return None


def neutron_matches_intent(conn: Any, engine: Engine) -> list[str]:
    """The changes ``converge adopt`` would record, described: none when the store holds exactly Neutron's
    state."""
    found = neutron_intent(conn, attached=attached_interfaces(engine))
    changes, _ = differences(engine, found)
    if not changes:
        return []
    with engine.connect() as db_conn:
        stored = {(r.kind, r.id): r.attributes for r in db_conn.execute(
            select(desired.c.kind, desired.c.id, desired.c.attributes)
            .where(desired.c.id.in_([c.id for c in changes[:20]])))}
    out = []
    for change in changes[:5]:
        key = (change.kind.value, change.id)
        if change.op.value == "delete":
            out.append(f"{key[0]} {key[1]} is in the store, not in Neutron")
        elif key not in stored:
            out.append(f"{key[0]} {key[1]} is in Neutron, not in the store: {change.attributes_json()[:300]}")
        else:
            mine = json.loads(stored[key])
            theirs = dict(change.attributes or {})
            diff = {f: (theirs.get(f), mine.get(f)) for f in sorted(set(mine) | set(theirs))
                    if mine.get(f) != theirs.get(f)}
            out.append(f"{key[0]} {key[1]} differs (neutron, store): {diff}")
    return out


def journal_depth(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(journal)).scalar_one())


@dataclass
class Phase:
    name: str
    inject: Callable[[], None]
    lift: Callable[[], None] | None = None
    worker_fault: bool = False
    drifted: int = 0


@dataclass
class Outcome:
    name: str
    figures: dict[str, Any]
    problems: list[str]


class Chaos:
    def __init__(self, stack: ScaleOut, *, phase_seconds: float, seed: int, converge_timeout: float = 180.0) -> None:
        self.stack = stack
        self.phase_seconds = phase_seconds
        self.converge_timeout = converge_timeout
        self.engine = db.make_engine(stack.database_url(1))
        self.side: FabricSide | OvnSide = OvnSide(stack) if stack.ovn is not None else FabricSide(stack)
        admin = stack.connections()[0]
        ext = admin.network.create_network(name="public", is_router_external=True, project_id="admin")
        admin.network.create_subnet(network_id=ext.id, ip_version=4, cidr=EXTERNAL_CIDR, project_id="admin",
                                    name="public-sub")
        self.admin = admin
        self.clients = [Client(n, stack.connections(), ext.id, seed) for n in range(PROJECTS)]
        for client in self.clients:
            client.start()
        self.takeover: float | None = None

    def close(self) -> None:
        for client in self.clients:
            client.stopping.set()
            client.running.set()
        for client in self.clients:
            client.join(60)
        self.engine.dispose()

    # -- the faults -------------------------------------------------------------------------------------
    def busiest_worker(self) -> tuple[str, int, list[str]]:
        """The worker holding the most roots: its id, its PID, its roots."""
        with self.engine.connect() as conn:
            held = conn.execute(select(roots.c.root, roots.c.owner).where(roots.c.owner.is_not(None))).all()
            pids = {r.worker: int(r.pid) for r in conn.execute(select(workers.c.worker, workers.c.pid))}
        counts = Counter(owner for _, owner in held)
        worker = max(counts, key=lambda w: counts[w])
        return worker, pids[worker], [root for root, owner in held if owner == worker]

    def watch_takeover(self, worker: str, theirs: list[str], since: float) -> None:
        def watch() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with self.engine.connect() as conn:
                    owners = {r.root: r.owner for r in conn.execute(
                        select(roots.c.root, roots.c.owner).where(roots.c.root.in_(theirs)))}
                if owners and all(o not in (None, worker) for o in owners.values()):
                    self.takeover = time.monotonic() - since
                    return
                time.sleep(0.05)
        threading.Thread(target=watch, daemon=True).start()

    def phases(self, names: list[str]) -> list[Phase]:
        s = self.stack
        paused: list[int] = []

        def kill_worker() -> None:
            worker, pid, theirs = self.busiest_worker()
            os.kill(pid, signal.SIGKILL)
            self.watch_takeover(worker, theirs, time.monotonic())
            if s.agent is not None and pid == s.agent.pid:
                s.agent.stop()
                s.start_agent()  # the operator's service manager restarts it

        def stop_worker() -> None:
            worker, pid, theirs = self.busiest_worker()
            os.kill(pid, signal.SIGSTOP)
            paused.append(pid)
            self.watch_takeover(worker, theirs, time.monotonic())

        def cont_worker() -> None:
            while paused:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(paused.pop(), signal.SIGCONT)

        def kill_api() -> None:
            s.kill_api(1)

        drift = self.side.drift

        def together() -> None:
            s.galera.kill(3)
            kill_api()
            stop_worker()
            drift()

        def together_lift() -> None:
            s.restart_api(1)
            cont_worker()
            s.galera.restart(3)

        every = {
            "galera-node": Phase("galera-node: kill -9 of node 2 (API server 2's), rejoin",
                                 lambda: s.galera.kill(2), lambda: s.galera.restart(2)),
            "api-server": Phase("api-server: kill -9 of API server 1 mid-request, restart", kill_api,
                                lambda: s.restart_api(1)),
            "worker-kill": Phase("worker-kill: kill -9 of the sync worker holding the most roots", kill_worker,
                                 worker_fault=True),
            "worker-stop": Phase("worker-stop: SIGSTOP of the sync worker holding the most roots, SIGCONT",
                                 stop_worker, cont_worker, worker_fault=True),
            "controller-down": Phase("controller-down: the controller stopped, started again", self.side.down,
                                     self.side.up),
            "controller-wipe": Phase("controller-wipe: every object and fence lost",
                                     self.side.wipe),
            "drift": Phase("drift: 50 objects dropped and 50 corrupted behind Converge's back", drift, drifted=100),
            "together": Phase("together: node 3 killed, API server 1 killed, busiest worker stopped, 100 drifted",
                              together, together_lift, worker_fault=True, drifted=100),
        }
        return [every[n] for n in names]

    # -- one phase --------------------------------------------------------------------------------------
    def run_phase(self, phase: Phase) -> Outcome:
        self.takeover = None
        before = {id(c): len(c.ledger.calls) for c in self.clients}
        audit_from = self.side.mark()
        third = self.phase_seconds / 3
        for client in self.clients:
            client.running.set()
        time.sleep(third)
        fault_from = time.monotonic()
        phase.inject()
        time.sleep(third)
        if phase.worker_fault:  # a stopped worker stays stopped until its roots moved (its lease ran out)
            deadline = time.monotonic() + 3 * self.stack.lease_duration
            while self.takeover is None and time.monotonic() < deadline:
                time.sleep(0.1)
        if phase.lift is not None:
            phase.lift()
        fault_to = time.monotonic()
        time.sleep(third)
        for client in self.clients:
            client.running.clear()
        for client in self.clients:
            client.idle.wait(120)
        stopped = time.monotonic()
        converged, problems = self._wait_converged()
        took = time.monotonic() - stopped
        calls = [c for cl in self.clients for c in cl.ledger.calls[before[id(cl)]:]]
        during = [c for c in calls if fault_from <= c.started <= fault_to]
        # A 4xx is the workload's own doing (a conflict between its calls), not the fault's: counted apart.
        refused = [c for c in during if not c.ok and c.status is not None and 400 <= c.status < 500]
        ok = [c for c in during if c.ok]
        latencies = sorted(c.took for c in during if c.ok)
        problems += answered_calls_hold(self.admin, self.clients)
        problems += self.side.stale_writes() or []
        applied = self.side.applied_since(audit_from)
        changed = sum(1 for c in calls if c.ok)
        figures = {
            "calls (all / during the fault)": f"{len(calls)} / {len(during)}",
            "success during the fault": f"{100 * len(ok) / max(1, len(during) - len(refused)):.1f} % "
                                        f"(and {len(refused)} 4xx answers to the workload's own conflicts)",
            "latency during the fault p50 / p99": (f"{1000 * percentile(latencies, 50):.0f} / "
                                                   f"{1000 * percentile(latencies, 99):.0f} ms"
                                                   if latencies else "-"),
            "failures by kind": Counter(f"{c.op}: {c.status or '-'} {(c.error or '')[:60]}" for c in during
                                        if not c.ok).most_common(4),
            "converged after the workload stopped": f"{took:.1f} s" if converged else f"NOT within {took:.0f} s",
            "takeover after the worker fault": f"{self.takeover:.2f} s" if self.takeover is not None else "-",
            "operations applied / 2xx calls": f"{applied if applied is not None else 'not audited'} / {changed}",
        }
        bound = 6 * changed + 3 * phase.drifted + 200
        if "wipe" not in phase.name and applied is not None and applied > bound:
            problems.append(f"{applied} operations applied for {changed} calls: a resync?")
        if phase.worker_fault and self.takeover is None:
            problems.append("the worker's roots were not taken over")
        return Outcome(phase.name, figures, problems)

    def _wait_converged(self) -> tuple[bool, list[str]]:
        deadline = time.monotonic() + self.converge_timeout
        last: list[str] = []
        while time.monotonic() < deadline:
            try:
                depth = journal_depth(self.engine)
                off = neutron_matches_intent(self.admin, self.engine)
                roots_off = differing_roots(self.engine, self.side.backend)
            except Exception as err:  # noqa: BLE001 - a node or the controller may still be coming back
                last = [f"cannot compare yet: {type(err).__name__}: {err}"]
                time.sleep(1)
                continue
            if depth == 0 and not off and not roots_off:
                return True, []
            last = [f"journal {depth}, Neutron vs intent: {off}, roots differing on the controller {roots_off[:5]}"]
            time.sleep(0.5)
        with contextlib.suppress(Exception):
            last += self._diagnose(roots_off[:5])
        return False, last

    def _diagnose(self, names: list[str]) -> list[str]:
        """What the store says about roots that did not converge: their lease, failures, objects not synced."""
        out = []
        with self.engine.connect() as conn:
            for r in conn.execute(select(roots.c.root, roots.c.owner, roots.c.epoch, roots.c.failures,
                                         roots.c.last_error, roots.c.repair_requested)
                                  .where(roots.c.root.in_(names))):
                out.append(f"root {r.root}: owner {r.owner} epoch {r.epoch} failures {r.failures} "
                           f"last error {r.last_error!r} repair requested {r.repair_requested}")
            for r in conn.execute(select(status.c.root, status.c.kind, status.c.id, status.c.state, status.c.message)
                                  .where(status.c.root.in_(names), status.c.state != "synced").limit(10)):
                out.append(f"{r.root} {r.kind} {r.id}: {r.state} {r.message!r}")
        live = {n: p for n, p in self.stack.pids().items()}
        out.append(f"processes running: {sorted(live)}")
        return out


@contextlib.contextmanager
def chaos(workdir: Path, *, phase_seconds: float, seed: int, lease: float = 6.0,
          backend: str = "fabric") -> Iterator[Chaos]:
    with ScaleOut(workdir, lease_duration=lease, backend=backend) as stack:
        runner = Chaos(stack, phase_seconds=phase_seconds, seed=seed)
        try:
            yield runner
        finally:
            runner.close()


ALL = ["galera-node", "api-server", "worker-kill", "worker-stop", "controller-down", "controller-wipe", "drift",
       "together"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", type=float, default=30.0, help="seconds of workload per fault")
    ap.add_argument("--faults", default="all", help=f"comma-separated, of: {', '.join(ALL)}")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--backend", choices=["fabric", "ovn"], default="fabric",
                    help="the controller: the reference fabric, or OVN's Northbound DB")
    ap.add_argument("--workdir", type=Path, help="keep every process's files and logs here (default: a temporary "
                                                   "folder, removed)")
    args = ap.parse_args()
    names = ALL if args.faults == "all" else args.faults.split(",")
    failed = False
    with (contextlib.nullcontext(str(args.workdir)) if args.workdir else
          tempfile.TemporaryDirectory(prefix="converge-chaos-")) as tmp, \
            chaos(Path(tmp), phase_seconds=args.phase, seed=args.seed, backend=args.backend) as runner:
        for phase in runner.phases(names):
            outcome = runner.run_phase(phase)
            report(outcome.name, {**outcome.figures, "problems": outcome.problems or "none"})
            failed |= bool(outcome.problems)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
