"""``converge adopt`` / ``converge drift --neutron`` / ``converge repair --neutron``: intent for a cloud
that existed before Converge (or drifted from it).

Reads every resource through the Neutron API as an administrator (openstacksdk: ``--os-cloud`` from
clouds.yaml, or ``--neutron-url`` for a noauth endpoint), translates each exactly as the driver and the
L3 plugin record it (routers and router interfaces through the plugin's own functions), and compares the
attributes with the intent store in Neutron's database (``--config-file``). Adopt and repair record what
differs — a create or update per resource missing or different, a delete per intent Neutron no longer
has — through ``record_many`` in transactions of 500; drift only lists. On a cloud already in step nothing
is written, and it says so. Idempotent: a second run finds nothing.

Run beside Neutron; the CLI reaches this module by name only, so the CLI layer stays free of Neutron.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

from neutron.db.models import l3 as l3_models
from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from converge.core.errors import ConfigurationError
from converge.core.inifile import read_neutron_config
from converge.core.kinds import Kind
from converge.neutron import l3, translate
from converge.store import db
from converge.store.intent import Change, record_many
from converge.store.schema import JournalOp, desired

Key = tuple[str, str]
COLLECTIONS = {Kind.NETWORK: "networks", Kind.SUBNET: "subnets", Kind.PORT: "ports",
               Kind.SECURITY_GROUP: "security_groups", Kind.SECURITY_GROUP_RULE: "security_group_rules",
               Kind.ROUTER: "routers", Kind.FLOATING_IP: "floatingips"}
PAGE = 500


def pages(cloud: Any, collection: str) -> Iterator[dict[str, Any]]:
    """Every item of a collection, page by page (marker paging, as the API offers it)."""
    marker = None
    while True:
        query = f"/{collection}?limit={PAGE}" + (f"&marker={marker}" if marker else "")
        answer = cloud.network.get(query)
        if answer.status_code == 404:  # an extension this cloud does not load (no L3 plugin: no routers)
            return
        answer.raise_for_status()
        items = answer.json()[collection]
        yield from items
        if len(items) < PAGE:
            return
        marker = items[-1]["id"]


def attached_interfaces(engine: Any) -> set[str]:
    """Ports Neutron linked to a router (its ``routerports`` rows, read from Neutron's database). A port that
    only looks like an interface — a process died between Neutron creating it and linking it, so Neutron's
    own clean-up never ran — is no interface, and the L3 plugin never recorded one for it."""
    try:
        with engine.connect() as conn:
            return {str(r[0]) for r in conn.execute(select(l3_models.RouterPort.port_id))}
    except (sa_exc.OperationalError, sa_exc.ProgrammingError) as err:
        if "routerports" not in str(err.orig):
            raise
        raise ConfigurationError("the store is not Neutron's database (it has no routerports table): give "
                                 "--config-file neutron.conf, whose [database] connection holds both") from None


def neutron_intent(cloud: Any, progress: Any = None, attached: set[str] | None = None) -> dict[Key, Change]:
    """What the driver and the L3 plugin would have recorded for every resource Neutron holds now.

    Routers and router interfaces are documented by the plugin's own functions (``l3.router_document``,
    ``l3.interface_of``), so intent the plugin recorded compares equal: a router with its gateway port and
    that port's subnets, an interface with its port's subnets. Both come from the listings read here
    anyway — every subnet (cidr, gateway_ip), every port (an administrator's listing holds the gateway
    ports, which belong to no project) — so no request is made per router; routers are documented once
    every port and subnet has been read. ``attached``: the ports Neutron linked to a router
    (:func:`attached_interfaces`); a port not among them is not taken for an interface."""
    found: dict[Key, Change] = {}
    subnets: dict[str, l3.Subnet] = {}
    gateways: dict[str, dict[str, Any]] = {}  # router id → its gateway port
    interfaces: list[dict[str, Any]] = []
    routers: list[dict[str, Any]] = []
    for kind, collection in COLLECTIONS.items():
        for item in pages(cloud, collection):
            if kind is Kind.ROUTER:
                routers.append(item)
            else:
                change = translate.upsert(kind, item, created=False)
                found[(kind.value, change.id)] = change
            if kind is Kind.SUBNET:
                subnets[item["id"]] = l3.Subnet(item["cidr"], item["gateway_ip"])
            elif kind is Kind.PORT and l3.is_gateway(item):
                gateways[item["device_id"]] = item
            elif kind is Kind.PORT and l3.is_interface(item) and (attached is None or item["id"] in attached):
                interfaces.append(item)
            if progress:
                progress()
    for router in routers:
        change = translate.upsert(Kind.ROUTER, l3.router_document(router, gateways.get(router["id"]), subnets),
                                  created=False)
        found[(Kind.ROUTER.value, change.id)] = change
    cidrs = {i: s.cidr for i, s in subnets.items()}
    for port in interfaces:
        interface = l3.interface_of(port, cidrs)
        if interface is not None:
            found[(Kind.ROUTER_INTERFACE.value, port["id"])] = translate.upsert(
                Kind.ROUTER_INTERFACE, interface, created=False)
    return found


def differences(engine: Any, found: dict[Key, Change]) -> tuple[list[Change], int]:
    """Changes that make the intent store match ``found``, and how many resources already match."""
    with engine.connect() as conn:
        stored = {(r.kind, r.id): (r.root, r.attributes) for r in conn.execute(
            select(desired.c.kind, desired.c.id, desired.c.root, desired.c.attributes))}
    changes: list[Change] = []
    same = 0
    for key, change in found.items():
        have = stored.get(key)
        if have is not None and have == (change.root, change.attributes_json()):
            same += 1
            continue
        op = JournalOp.CREATE if have is None else JournalOp.UPDATE
        changes.append(Change.build(root=change.root, kind_=key[0], id_=key[1], op=op.value,
                                    attributes=change.attributes, revision=change.revision))
    for key, (root, _) in stored.items():
        if key not in found:
            changes.append(Change.build(root=root, kind_=key[0], id_=key[1], op=JournalOp.DELETE.value))
    return changes, same


def connect(args: argparse.Namespace) -> Any:
    import openstack

    if args.neutron_url:
        return openstack.connect(auth_type="none", auth={"endpoint": args.neutron_url},
                                 load_yaml_config=False, load_envvars=False)
    return openstack.connect(cloud=args.os_cloud)


def main(argv: list[str], *, command: str = "adopt") -> int:
    from rich.console import Console
    from rich.progress import Progress

    ap = argparse.ArgumentParser(prog=f"converge {command}", description=__doc__.splitlines()[0])
    ap.add_argument("--config-file", action="append", required=True, help="neutron.conf (and ml2_conf.ini)")
    ap.add_argument("--neutron-url", help="a noauth Neutron endpoint (else --os-cloud from clouds.yaml)")
    ap.add_argument("--os-cloud", default=None, help="cloud name in clouds.yaml (admin credentials)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    write = command != "drift"
    out, err = Console(), Console(stderr=True)
    url = read_neutron_config(args.config_file).get("db")
    if not url:
        err.print("error: no [database] connection in the config files")
        return 2
    engine = db.make_engine(url)
    cloud = connect(args)
    with Progress(console=err, disable=args.json) as bar:
        task = bar.add_task("reading Neutron", total=None)
        found = neutron_intent(cloud, lambda: bar.advance(task), attached_interfaces(engine))
        changes, same = differences(engine, found)
        if write and changes:
            rec = bar.add_task("recording intent", total=len(changes))
            for i in range(0, len(changes), 500):
                with engine.begin() as conn:
                    record_many(conn, changes[i:i + 500])
                bar.advance(rec, len(changes[i:i + 500]))
    by_op = {op.value: sum(1 for c in changes if c.op is op) for op in JournalOp if op is not JournalOp.REPAIR}
    summary = {"resources": len(found), "already_in_intent": same, "recorded" if write else "differences":
               len(changes), "by_op": by_op}
    if args.json:
        sys.stdout.write(json.dumps({**summary, "changes": [f"{c.op.value} {c.kind.value}/{c.id}" for c in changes]
                                     if not write else []}, indent=2) + "\n")
    elif not changes:
        out.print(f"no difference: intent already matches Neutron ({len(found)} resources)")
    else:
        verb = "recorded" if write else "found"
        ops = ", ".join(f"{n} to {op}" for op, n in by_op.items() if n)
        out.print(f"{verb} {len(changes)} differences ({ops}); {same} of {len(found)} resources already matched")
        if not write:
            for c in changes[:50]:
                out.print(f"  {c.op.value:6} {c.kind.value} {c.id} (project {c.root})")
    return 3 if (changes and not write) else 0
