"""``converge demo --backend fabric``: the whole stack on one machine with the fabric controller, driven
like a cloud user; and what both Neutron demos share (this one and ``cli/ovn_demo.py``, the default).

Starts a fabric controller, MariaDB, ``neutron-db-manage upgrade heads``, the Neutron API under uWSGI with
the ``converge`` mechanism and extension drivers and the ``converge_router`` L3 plugin, and
``neutron-periodic-workers`` running Converge's sync worker (all on 127.0.0.1, stopped by PID at the
end). Then, through openstacksdk: an external network, and per project a network, a subnet, a security
group with a rule, ports bound to hosts, a router with a gateway and an interface, a floating IP. It
waits until every project's controller ETag equals the fingerprint of its intent, every bound port is
ACTIVE in Neutron and every resource reads ``converge:sync_state: synced``, and prints the status.

Shared: :func:`converge_neutron` (the stack, with Converge loaded), :func:`sync_states` (every resource's
``converge:sync_state``), :func:`interrupts` (SIGTERM unwinds like Ctrl-C, so everything started is
stopped) and :func:`hold` (``--keep-running``: wait for Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from converge.backends.base import Backend
from converge.cli import output
from converge.cli.context import Settings
from converge.cli.sync_cmds import cmd_status
from converge.core import canonical
from converge.store import db, sync

if TYPE_CHECKING:
    from converge.testing.neutron import NeutronStack

# The collections whose resources carry converge:sync_state (rules sync with their group).
SYNCED = ("networks", "subnets", "ports", "routers", "floatingips", "security_groups")


def fresh_workdir(path: str) -> Path:
    work = Path(path)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def converge_neutron(workdir: Path, converge: Mapping[str, object], **options: Any) -> NeutronStack:
    """Neutron with ``converge`` as its mechanism driver, its extension driver, the ``converge_router`` L3
    plugin and ``[converge]`` = ``converge``; not started (a context manager)."""
    from converge.testing.neutron import NeutronStack

    # openstacksdk 4.x warns about its own internals on every call.
    warnings.filterwarnings("ignore", module="openstack")
    return NeutronStack(workdir, mechanism_drivers=["converge"], service_plugins=["converge_router"],
                        config={"converge": converge},
                        ml2_config={"ml2": {"extension_drivers": "port_security,converge"}}, **options)


def sync_states(cloud: Any) -> dict[str, list[dict[str, Any]]]:
    """Collection → every resource the admin sees there (any project's), as the API returns it."""
    return {c: list(cloud.network.get(f"/{c}").json()[c]) for c in SYNCED}


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Ctrl-C and SIGTERM ignored inside: a teardown runs to its end."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def hold(lines: Sequence[str]) -> None:
    """``--keep-running``: print how to reach what runs, then wait for Ctrl-C (or SIGTERM)."""
    for line in lines:
        output.console.print(line, highlight=False)
    output.console.print("[bold]kept running[/bold]: Ctrl-C stops everything")
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


def build_topology(cloud: Any, projects: int) -> list[str]:
    """An external network (admin project); per project: network, subnet, security group + rule, three
    bound ports, a router with a gateway and an interface, a floating IP; returns the port ids."""
    ports: list[str] = []
    public = cloud.network.create_network(project_id="demo-admin", name="public", is_router_external=True)
    cloud.network.create_subnet(project_id="demo-admin", network_id=public.id, cidr="172.24.0.0/16", ip_version=4)
    for i in range(projects):
        project = f"demo-project-{i}"
        net = cloud.network.create_network(project_id=project, name=f"net-{i}")
        cloud.network.create_subnet(project_id=project, network_id=net.id, cidr=f"10.{i}.0.0/24", ip_version=4)
        group = cloud.network.create_security_group(project_id=project, name="web")
        cloud.network.create_security_group_rule(
            project_id=project,
            security_group_id=group.id,
            direction="ingress",
            ethertype="IPv4",
            protocol="tcp",
            port_range_min=443,
            port_range_max=443,
        )
        for vm in range(3):
            port = cloud.network.create_port(
                project_id=project,
                network_id=net.id,
                name=f"vm-{vm}",
                security_group_ids=[group.id],
                binding_host_id=f"compute-{vm}",
            )
            ports.append(port.id)
        router = cloud.network.create_router(
            project_id=project, name=f"router-{i}", external_gateway_info={"network_id": public.id}
        )
        subnet = next(iter(cloud.network.subnets(network_id=net.id)))
        cloud.network.add_interface_to_router(router, subnet_id=subnet.id)
        cloud.network.create_ip(project_id=project, floating_network_id=public.id, port_id=ports[-1])
    return ports


def converged(engine: Any, client: Backend, cloud: Any, ports: list[str]) -> tuple[bool, str]:
    with engine.connect() as conn:
        pending = sync.pending_roots(conn)
        roots = list(sync.all_acked(conn))
        wanted = {r: canonical.combine(sync.desired_in_root(conn, r).values()) for r in roots}
    differing = [r for r in roots if client.root_etag(r) != wanted[r]]
    active = sum(1 for p in ports if cloud.network.get_port(p).status == "ACTIVE")
    states = [r["converge:sync_state"] for items in sync_states(cloud).values() for r in items]
    synced = sum(1 for s in states if s == "synced")
    done = not pending and not differing and active == len(ports) and synced == len(states)
    return done, (
        f"journal roots pending {len(pending)}, projects differing {len(differing)}, "
        f"ports ACTIVE {active}/{len(ports)}, resources synced {synced}/{len(states)}"
    )


def run(cfg: Settings, args: argparse.Namespace) -> int:
    from converge.testing.fabric import FabricProcess
    from converge.testing.processes import interrupts

    work = fresh_workdir(args.workdir)
    with interrupts(), FabricProcess(work / "fabric", faults=False, port_up_delay=0.5) as fabric:
        output.console.print(f"fabric controller: {fabric.url} (pid {fabric.pid})")
        converge = {"controller_urls": fabric.url, "token_file": str(fabric.token_file)}
        began = time.monotonic()
        with converge_neutron(work / "neutron", converge) as stack:
            output.console.print(
                f"Neutron API: {stack.url} (MariaDB, uWSGI, periodic workers) up in {time.monotonic() - began:.1f} s"
            )
            cloud = stack.connection()
            began = time.monotonic()
            ports = build_topology(cloud, args.projects)
            output.console.print(
                f"created {args.projects} projects through the Neutron API in {time.monotonic() - began:.1f} s"
            )
            engine = db.make_engine(stack.db_url)
            local = Settings(stack.db_url, (fabric.url,), str(fabric.token_file), cfg.json)
            client = local.backend(writer="converge-demo")
            deadline = time.monotonic() + 120
            done, summary = False, ""
            while time.monotonic() < deadline:
                done, summary = converged(engine, client, cloud, ports)
                if done:
                    break
                time.sleep(0.5)
            took = time.monotonic() - began
            args.root = None
            cmd_status(local, args)
            client.close()
            engine.dispose()
            if done:
                output.console.print(
                    f"[green bold]converged[/green bold] {took:.1f} s after the first API call: {summary}")
            if args.keep_running:
                hold([f"Neutron API: {stack.url}", f"fabric controller: {fabric.url}"])
            if not done:
                return output.fail(f"not converged after 120 s: {summary}", 1)
            return 0
