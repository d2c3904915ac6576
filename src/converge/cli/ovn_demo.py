"""``converge demo`` (the default): Neutron's API → Converge → OVN on one machine, proven with packets.

Started in ``--workdir``, on 127.0.0.1 only, with ``converge.testing``'s launchers, and stopped by PID at the
end — also after a failed check, an error, Ctrl-C or SIGTERM: OVN's NB and SB ``ovsdb-server`` s and
``ovn-northd``; one chassis (``ovs-vswitchd`` on the userspace datapath in a namespace of its own, and
``ovn-controller``) whose hostname is every port's binding host; MariaDB, the Neutron API under uWSGI with
``converge`` + ``converge_router`` and ``[converge] backend = ovn``, and ``neutron-periodic-workers``
running Converge's sync worker. Through openstacksdk it creates two projects' networks, a router between
two of them with a gateway on an external network, ports bound to the chassis, a floating IP and a
security group rule, and plugs a network namespace in as each port. Then it checks, printing each as it
ends: ports ACTIVE, pings (one network, across the router, a floating IP from an outside namespace, SNAT),
every resource ``converge:sync_state: synced``, the NB rows Converge wrote, and an ``ovn-nbctl lsp-del``
made behind Converge's back repaired (port back in NB, ping back). Exit 0 only if every check held.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.text import Text
from rich.tree import Tree

from converge.cli import output
from converge.cli.context import Settings
from converge.cli.neutron_demo import converge_neutron, fresh_workdir, hold, sync_states, uninterrupted
from converge.testing.neutron import NeutronStack
from converge.testing.ovn import OvnControlPlane, OvnDataplane, Vm
from converge.testing.processes import interrupts

HOST = "demo-compute-1"  # the chassis' hostname: every port's binding:host_id
ADMIN, ALPHA, BETA = "demo-admin", "demo-alpha", "demo-beta"
OUTSIDE_IP = "172.24.4.100"  # a host on the external network, with no route to the projects' addresses
WAIT = 30.0  # seconds a check may take before it counts as failed
NAME_WIDTH = 29
INDENT = 1 + 1 + NAME_WIDTH + 7 + 2  # where a row's detail starts
# Where Converge writes (docs/ovn.md); its per-project fencing markers are the rows with converge:epoch.
NB_TABLES = ("Logical_Switch", "Logical_Switch_Port", "Logical_Router", "Logical_Router_Port", "NAT",
             "Gateway_Chassis", "Logical_Router_Static_Route", "Port_Group", "ACL", "DHCP_Options", "Address_Set",
             "DNS")
EPOCH = "converge:epoch"
NAMES = {"networks": "network", "subnets": "subnet", "ports": "port", "routers": "router",
         "floatingips": "floating IP", "security_groups": "security group"}
OWNERS = {"network:router_interface": "router interface", "network:router_gateway": "router gateway",
          "network:floatingip": "floating IP port"}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


Outcome = tuple[bool, str]  # whether a check held, and what it saw


@dataclass
class Checks:
    """The checks in the order they ran, each printed as it ends."""

    done: list[Check] = field(default_factory=list)

    def record(self, name: str, ok: bool, detail: str, seconds: float | None = None) -> bool:
        self.done.append(Check(name, ok, detail))
        first, *more = detail.splitlines() or [""]  # a log tail is printed whole with the failures, at the end
        row("[green]✓[/green]" if ok else "[red bold]✗[/red bold]", name, first + (" (…)" if more else ""), seconds)
        return ok

    def run(self, name: str, check: Callable[[], Outcome]) -> bool:
        """Run ``check`` and record its outcome; an error in it fails this check, the next ones still run."""
        began = time.monotonic()
        try:
            ok, detail = check()
        except Exception as error:  # noqa: BLE001 - reported as the failed check
            ok, detail = False, f"{type(error).__name__}: {error}"
        return self.record(name, ok, detail, time.monotonic() - began)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.done if not c.ok]


def row(mark: str, name: str, detail: str, seconds: float | None = None) -> None:
    """One line of the demo's output, aligned: a mark, a name, a time, and what happened (wrapped under itself)."""
    took = "" if seconds is None else output.age(seconds)
    lines = textwrap.wrap(detail, max(50, (output.console.width or 120) - INDENT), break_on_hyphens=False,
                          break_long_words=False) or [""]
    text = Text.from_markup(mark).append(f" {name:<{NAME_WIDTH}}", "bold").append(f"{took:>7}  ", "dim")
    text.append(lines[0])
    for line in lines[1:]:
        text.append("\n" + " " * INDENT + line)
    output.console.print(text, soft_wrap=True)


@dataclass
class Topology:
    """What the demo created through the API: ports (and their namespaces once plugged) by name, the floating IP."""

    ports: dict[str, Any] = field(default_factory=dict)
    subnets: dict[str, Any] = field(default_factory=dict)  # by port name: the subnet of its address
    vms: dict[str, Vm] = field(default_factory=dict)
    floating_ip: str = ""
    counts: Counter[str] = field(default_factory=Counter)


def owned(project: str, **attributes: Any) -> dict[str, Any]:
    return {"project_id": project, **attributes}


def build(cloud: Any) -> Topology:
    """Two projects' networks; in ``demo-alpha`` a router between two of them with a gateway on ``public``,
    an ICMP rule and a floating IP; ports bound to the chassis' host."""
    top = Topology()
    net = cloud.network

    def network(project: str, name: str, cidr: str, *, external: bool = False) -> tuple[Any, Any]:
        made = net.create_network(**owned(project, name=name, is_router_external=external))
        subnet = net.create_subnet(**owned(project, network_id=made.id, ip_version=4, cidr=cidr, name=f"{name}-sub",
                                           enable_dhcp=not external))
        top.counts.update(["network", "subnet"])
        return made, subnet

    def port(project: str, name: str, network: tuple[Any, Any], *, outside: bool = False) -> None:
        """A port bound to the chassis' host; ``outside``: the external host, at OUTSIDE_IP without port
        security."""
        made, subnet = network
        fixed = {"subnet_id": subnet.id, **({"ip_address": OUTSIDE_IP} if outside else {})}
        top.ports[name] = net.create_port(**owned(project, network_id=made.id, name=name, fixed_ips=[fixed],
                                                  binding_host_id=HOST, device_owner="compute:nova",
                                                  device_id=f"demo-vm-{name}",
                                                  **({"port_security_enabled": False} if outside else {})))
        top.subnets[name] = subnet
        top.counts["port"] += 1

    public = network(ADMIN, "public", "172.24.4.0/24", external=True)
    port(ADMIN, "outside", public, outside=True)  # first: OUTSIDE_IP is free before the router takes one
    web = network(ALPHA, "alpha-web", "10.0.1.0/24")
    db = network(ALPHA, "alpha-db", "10.0.2.0/24")
    beta = network(BETA, "beta-net", "10.0.1.0/24")  # the same addresses as alpha-web, on a switch of its own
    router = net.create_router(**owned(ALPHA, name="alpha-router", external_gateway_info={"network_id": public[0].id}))
    for _, subnet in (web, db):
        net.add_interface_to_router(router, subnet_id=subnet.id)
    top.counts.update(["router", "router interface", "router interface"])
    for name, where in (("web-1", web), ("web-2", web), ("db-1", db)):
        port(ALPHA, name, where)
    port(BETA, "beta-1", beta)
    # The outside host is in no group of alpha's: its ping to the floating IP needs this rule.
    default = next(net.security_groups(project_id=ALPHA, name="default"))
    net.create_security_group_rule(**owned(ALPHA, security_group_id=default.id, direction="ingress",
                                           ethertype="IPv4", protocol="icmp"))
    top.counts["security group rule"] += 1
    top.floating_ip = net.create_ip(**owned(ALPHA, floating_network_id=public[0].id,
                                            port_id=top.ports["web-1"].id)).floating_ip_address
    top.counts["floating IP"] += 1
    return top


def plug(top: Topology, dataplane: OvnDataplane) -> None:
    """A namespace plugged into br-int as each port, its address and MAC the port's; the outside host gets no
    default route (it cannot reach the projects' addresses but through a floating IP)."""
    for name, port in top.ports.items():
        subnet = top.subnets[name]
        address = f"{port.fixed_ips[0]['ip_address']}/{subnet.cidr.split('/')[1]}"
        top.vms[name] = dataplane.add_vm(name, port.id, port.mac_address, address,
                                         gateway=None if name == "outside" else subnet.gateway_ip)


def statuses(cloud: Any, ports: dict[str, Any]) -> dict[str, str]:
    """Port id → its status in Neutron, in one call."""
    ids = "&".join(f"id={p.id}" for p in ports.values())
    return {p["id"]: p["status"] for p in cloud.network.get(f"/ports?{ids}").json()["ports"]}


def active(cloud: Any, ports: dict[str, Any], before: dict[str, str]) -> Outcome:
    """Until every port reads ACTIVE: ovn-controller claimed it, NB says up, Converge completed the provisioning
    block. ``before``: their statuses before the namespaces were plugged."""
    began, status = time.monotonic(), {}
    with output.progress() as bar:
        task = bar.add_task("ports ACTIVE", total=len(ports))
        while time.monotonic() - began < WAIT:
            status = statuses(cloud, ports)
            bar.update(task, completed=sum(1 for s in status.values() if s == "ACTIVE"))
            if all(s == "ACTIVE" for s in status.values()):
                break
            time.sleep(0.2)
    down = [f"{name} {status.get(p.id)}" for name, p in ports.items() if status.get(p.id) != "ACTIVE"]
    was = Counter(before.values())
    return not down, (f"{len(ports) - len(down)}/{len(ports)} ports bound to {HOST} ACTIVE "
                      f"({', '.join(f'{n} {s}' for s, n in sorted(was.items()))} before their namespaces were "
                      "plugged): ovn-controller claimed them, NB says up, Converge completed their provisioning block"
                      + (f"; not ACTIVE: {', '.join(down)}" if down else ""))


def ping(source: Vm, target: str, address: str, why: str) -> Outcome:
    """Whether ``address`` answers ``source``'s pings within WAIT seconds."""
    ok = source.wait_ping(address, timeout=WAIT)
    return ok, (f"{source.name} {source.ip} → {target} {address}: {why}"
                + ("" if ok else f"; no answer in {WAIT:.0f} s"))


def synced(cloud: Any) -> Outcome:
    """Until every resource of every project reads ``converge:sync_state: synced``."""
    began = time.monotonic()
    while True:
        states = sync_states(cloud)
        behind = [f"{c} {r.get('name') or r['id']} {r.get('converge:sync_state')} {r.get('converge:sync_error') or ''}"
                  for c, items in states.items() for r in items if r.get("converge:sync_state") != "synced"]
        if not behind or time.monotonic() - began > WAIT:
            break
        time.sleep(0.2)
    if behind:
        return False, "not synced: " + "; ".join(behind)
    return True, "converge:sync_state: synced on all " + ", ".join(plural(len(items), NAMES[c])
                                                                 for c, items in states.items())


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def nb_rows(ovn: OvnControlPlane, table: str) -> dict[str, dict[str, Any]]:
    """Rows of an NB table by UUID, each column decoded from OVSDB's JSON (a set of one is its value)."""
    raw = json.loads(ovn.nbctl("--format=json", "list", table))

    def value(v: Any) -> Any:
        if isinstance(v, list):
            kind, body = v
            if kind == "uuid":
                return body
            if kind == "set":
                return [value(x) for x in body]
            return {value(k): value(x) for k, x in body}  # map
        return v

    decoded = ({h: value(v) for h, v in zip(raw["headings"], row, strict=True)} for row in raw["data"])
    return {row["_uuid"]: row for row in decoded}


def many(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def ours(row: dict[str, Any]) -> bool:
    return any(key.startswith("converge:") for key in row.get("external_ids", {}))


def nb_summary(ovn: OvnControlPlane, top: Topology) -> Outcome:
    """Print a short ``ovn-nbctl show`` of the rows that carry Converge's marks."""
    rows = {table: {u: r for u, r in nb_rows(ovn, table).items() if ours(r)} for table in NB_TABLES}
    markers = [r for table in rows.values() for r in table.values() if EPOCH in r["external_ids"]]
    total = sum(len(r) for r in rows.values())
    tree = Tree(f"[bold]NB rows Converge wrote[/bold] [dim](ovn-nbctl --db={ovn.nb_unix} show)[/dim]", highlight=False)
    for switch in sorted(rows["Logical_Switch"].values(), key=lambda r: r["external_ids"]["neutron:network_name"]):
        ports = []
        for lsp in (rows["Logical_Switch_Port"][u] for u in many(switch["ports"]) if u in rows["Logical_Switch_Port"]):
            ids = lsp["external_ids"]
            owner = ids.get("neutron:device_owner", "")
            if owner in OWNERS:
                ports.append(OWNERS[owner])
                continue
            address = next((a.split(" ", 1)[1] for a in many(lsp["addresses"]) if " " in a), "")
            ports.append(f"{ids.get('neutron:port_name')} {address} {'up' if lsp.get('up') is True else 'down'}")
        tree.add(f"switch [bold]{escape(switch['external_ids']['neutron:network_name'])}[/bold] "
                 f"[dim]{switch['name'][:17]}…[/dim]: " + ", ".join(sorted(ports)), highlight=False)
    for router in rows["Logical_Router"].values():
        lrps = [rows["Logical_Router_Port"][u] for u in many(router["ports"]) if u in rows["Logical_Router_Port"]]
        nats = sorted((rows["NAT"][u] for u in many(router["nat"]) if u in rows["NAT"]),
                      key=lambda n: (n["type"], n["logical_ip"]))
        chassis = sorted({g["chassis_name"] for g in rows["Gateway_Chassis"].values()})
        branch = tree.add(f"router [bold]{escape(router['external_ids']['neutron:router_name'])}[/bold] "
                          f"[dim]{router['name'][:17]}…[/dim]", highlight=False)
        branch.add("ports " + ", ".join(sorted(" ".join(many(p["networks"])) for p in lrps))
                   + (f"; gateway chassis {', '.join(chassis)}" if chassis else ""), highlight=False)
        branch.add("NAT " + ", ".join(f"{n['type']} {n['external_ip']} {'↔' if n['type'] == 'dnat_and_snat' else '←'} "
                                      f"{n['logical_ip']}" for n in nats), highlight=False)
    tree.add(f"{len(rows['Port_Group'])} port groups (security groups) with {len(rows['ACL'])} ACLs (their rules), "
             f"{len(rows['DHCP_Options'])} DHCP_Options (subnets), {len(markers)} fencing markers (one per project)",
             highlight=False)
    output.console.print(tree)
    found = Counter({"network": len(rows["Logical_Switch"]), "router": len(rows["Logical_Router"]),
                     "floating IP": sum(1 for n in rows["NAT"].values() if n["type"] == "dnat_and_snat")})
    missing = [f"{plural(n, kind)} in NB, {top.counts[kind]} made"
               for kind, n in found.items() if n != top.counts[kind]]
    return not missing, (f"{total} rows stamped converge:* in {sum(1 for r in rows.values() if r)} tables: a switch "
                         "per network, a router, a NAT per floating IP"
                         + (f"; but {', '.join(missing)}" if missing else ""))


def repaired(ovn: OvnControlPlane, top: Topology) -> Outcome:
    """``ovn-nbctl lsp-del`` of web-2 behind Converge's back: the time until it is back in NB, then ping."""
    victim, client = top.vms["web-2"], top.vms["web-1"]
    ovn.nbctl("lsp-del", victim.port_id)
    began = time.monotonic()
    while not ovn.nbctl("--bare", "--columns=name", "find", "Logical_Switch_Port", f"name={victim.port_id}"):
        if time.monotonic() - began > WAIT:
            return False, f"ovn-nbctl lsp-del web-2: not back in NB after {WAIT:.0f} s"
        time.sleep(0.01)
    back = time.monotonic() - began
    ok = client.wait_ping(victim.ip, timeout=WAIT)
    return ok, (f"ovn-nbctl lsp-del web-2 → back in NB {output.age(back)} after the deletion (NB pushed the "
                "change to the sync worker, which repaired that project; its sweep runs every 5 s), "
                + (f"web-1 → web-2 answers again {output.age(time.monotonic() - began)} after it" if ok
                   else f"but web-1 → web-2 got no answer in {WAIT:.0f} s"))


@dataclass
class Started:
    """What the demo started, to prove after the teardown that none of it is left."""

    pids: dict[str, int] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    stack: NeutronStack | None = None

    def left(self) -> list[str]:
        alive = [f"{name} (pid {pid})" for name, pid in self.pids.items() if running(pid)]
        if self.stack is not None:
            alive += [name for name, up in self.stack.running().items() if up]
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
        present = {line.split()[0] for line in listed.splitlines() if line.strip()}
        return alive + [f"namespace {ns}" for ns in self.namespaces if ns in present]


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def run(cfg: Settings, args: argparse.Namespace) -> int:
    began = time.monotonic()
    work = fresh_workdir(args.workdir)
    checks, started = Checks(), Started()
    stopping = began
    output.console.print(f"[bold]Converge demo[/bold]: Neutron API → Converge → OVN Northbound DB, proven with "
                         f"packets (workdir {work})", highlight=False)
    try:
        with interrupts(), contextlib.ExitStack() as stack:
            try:
                demo(checks, started, stack, work, keep_running=args.keep_running)
            except Exception as error:  # noqa: BLE001 - a start-up or API failure: reported, then all is stopped
                checks.record("the demo ran to its end", False, f"{type(error).__name__}: {error}")
            finally:
                with uninterrupted():
                    output.console.print("stopping everything the demo started …")
                    stopping = time.monotonic()
                    stack.close()
    except KeyboardInterrupt:
        output.errors.print("[red]interrupted[/red]: everything the demo started is stopped")
        raise
    left = started.left()
    processes = len(started.pids) + (len(started.stack.running()) if started.stack else 0)
    checks.record("everything stopped", not left, f"left running: {', '.join(left)}" if left else
                  f"{processes} processes (OVN, chassis, MariaDB, uWSGI, periodic workers) and "
                  f"{len(started.namespaces)} namespaces gone", time.monotonic() - stopping)
    took = time.monotonic() - began
    if checks.failed:
        for check in checks.failed:
            output.errors.print(f"[red]failed:[/red] {escape(check.name)}: {escape(check.detail)}", highlight=False,
                                soft_wrap=True)
        return output.fail(f"{len(checks.failed)} of {len(checks.done)} checks failed ({took:.0f} s)", 1)
    output.console.print(f"[green bold]all {len(checks.done)} checks held[/green bold] in {took:.0f} s")
    return 0


def demo(checks: Checks, started: Started, stack: contextlib.ExitStack, work: Path, *, keep_running: bool) -> None:
    """Start everything (each pushed on ``stack``, which stops it), create the cloud, run the checks."""
    step = time.monotonic()
    ovn = stack.enter_context(OvnControlPlane(work / "ovn"))
    chassis = stack.enter_context(OvnDataplane(ovn, work / "chassis", hostname=HOST))
    started.pids |= ovn.pids() | chassis.pids()
    started.namespaces.append(chassis.namespace)
    row("▸", "OVN", f"NB {ovn.nb_tcp}, SB, northd; chassis {chassis.chassis} (hostname {HOST}, userspace "
        "datapath): pids " + ", ".join(f"{n} {p}" for n, p in started.pids.items()), time.monotonic() - step)
    step = time.monotonic()
    converge = {"backend": "ovn", "ovn_nb_connection": ovn.nb_tcp, "ovn_gateway_chassis": chassis.chassis}
    neutron: NeutronStack = stack.enter_context(converge_neutron(work / "neutron", converge, processes=1,
                                                                 tenant_network_type="geneve"))
    started.stack = neutron
    started.pids["mariadbd"] = neutron.mariadb.pid
    row("▸", "Neutron", f"API {neutron.url} under uWSGI, converge + converge_router, [converge] backend = ovn; "
        f"periodic workers running Converge's sync worker; MariaDB pid {neutron.mariadb.pid}", time.monotonic() - step)
    cloud = neutron.connection()
    step = time.monotonic()
    top = build(cloud)
    row("▸", "cloud, through the API", ", ".join(plural(n, kind) for kind, n in top.counts.items())
        + f" in projects {ADMIN}, {ALPHA}, {BETA}", time.monotonic() - step)
    before = statuses(cloud, top.ports)
    step = time.monotonic()
    try:
        plug(top, chassis)
    finally:
        started.namespaces += [vm.namespace for vm in top.vms.values()]
    row("▸", "namespaces", f"one plugged into br-int as each port, with its MAC and address: {', '.join(top.vms)}",
        time.monotonic() - step)
    vms = top.vms
    checks.run("ports ACTIVE", lambda: active(cloud, top.ports, before))
    checks.run("ping on one network", lambda: ping(vms["web-1"], "web-2", vms["web-2"].ip, "both on alpha-web"))
    checks.run("ping across the router", lambda: ping(vms["web-1"], "db-1", vms["db-1"].ip,
                                                      "alpha-web → alpha-router → alpha-db"))
    checks.run("ping to a floating IP", lambda: ping(
        vms["outside"], "web-1's floating IP", top.floating_ip, "from the external network, through the router's "
        "dnat_and_snat on the gateway chassis (the ICMP rule lets it in)"))
    checks.run("SNAT", lambda: ping(vms["db-1"], "outside", vms["outside"].ip, "db-1 has no floating IP and the "
                                    "outside host no route to 10.0.0.0/8: its answer proves the router's SNAT"))
    checks.run("every resource synced", lambda: synced(cloud))
    checks.run("NB rows", lambda: nb_summary(ovn, top))
    checks.run("out-of-band deletion repaired", lambda: repaired(ovn, top))
    if keep_running:
        hold([f"Neutron API: {neutron.url} (noauth, e.g. curl {neutron.url}/v2.0/ports)",
              f"NB: ovn-nbctl --db={ovn.nb_unix} show",
              "namespaces: " + ", ".join(f"{name} {vm.namespace} ({vm.ip})" for name, vm in vms.items()),
              f"e.g. ip netns exec {vms['web-1'].namespace} ping {vms['db-1'].ip}"])
