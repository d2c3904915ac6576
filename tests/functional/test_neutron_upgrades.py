"""Upgrades as deployment tools run them, with the real ``neutron-db-manage`` and ``neutron-status`` on
MariaDB: Converge's expand and contract branches, a database the first release created upgraded online
while the Neutron API (Converge loaded) keeps writing and a sync worker keeps draining, and Converge's
upgrade checks at each step."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy
from neutron_support import MARKS, converge_stack, module_fabric, wait_converged  # noqa: F401 - "fabric" fixture
from openstack.connection import Connection

from converge.store import db, migrate
from converge.testing.fabric import FabricProcess
from converge.testing.mariadb import MariaDB
from converge.testing.neutron import BIN, NeutronStack, owned

pytestmark = [*MARKS, pytest.mark.mariadb]

SUBPROJECT = ["--subproject", "networking-converge"]
FIRST_RELEASE = "0001_initial"  # Converge's only revision before the expand/contract branches
PROJECTS = [f"p-upgrade-{i}" for i in range(3)]
WRITERS = 3
AFTER = 3  # creates each writer makes once the expand has finished
SUCCESS, WARNING, FAILURE = 0, 1, 2  # oslo.upgradecheck's codes


def db_manage(stack: NeutronStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "neutron-db-manage"), *stack.config_args(), *args], env=stack.env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)


def succeeds(stack: NeutronStack, *args: str) -> str:
    done = db_manage(stack, *args)
    assert done.returncode == 0, f"neutron-db-manage {' '.join(args)}: {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


def converge_checks(stack: NeutronStack) -> dict[str, tuple[int, str]]:
    """``neutron-status upgrade check --json`` on the stack's files: Converge's checks, name → (code, details).
    A third file turns off Neutron's own check that would look for an OVN NB on 127.0.0.1:6641."""
    quiet = stack.workdir / "status.conf"
    quiet.write_text("[ovn]\ndisable_ovn_dhcp_for_baremetal_ports = True\n")
    done = subprocess.run([str(BIN / "neutron-status"), *stack.config_args(), "--config-file", str(quiet),
                           "upgrade", "check", "--json"], env=stack.env(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode in (SUCCESS, WARNING, FAILURE), f"neutron-status: {done.returncode}\n{done.stdout}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {c["check"]: (c["result"], c["details"]) for c in report["checks"] if c["check"].startswith("Converge")}


def offline_migrations(stack: NeutronStack) -> bool:
    """``has_offline_migrations``: exit 1 and a message when the contract branch has revisions to apply."""
    done = db_manage(stack, *SUBPROJECT, "has_offline_migrations")
    assert done.returncode in (0, 1), done.stdout + done.stderr
    assert ("contract branch" in done.stdout) is bool(done.returncode), done.stdout
    return bool(done.returncode)


def at_first_release(stack: NeutronStack) -> None:
    """What the stack's start does instead of ``upgrade heads``: Neutron's tables at their heads, Converge's
    at 0001_initial — a database as Converge's first release left it."""
    succeeds(stack, "--subproject", "neutron", "upgrade", "heads")
    engine = db.make_engine(stack.db_url)
    try:
        migrate.upgrade_to(engine, FIRST_RELEASE)
    finally:
        engine.dispose()


def schema_state(stack: NeutronStack) -> migrate.SchemaState:
    engine = db.make_engine(stack.db_url)
    try:
        with engine.connect() as conn:
            return migrate.schema_state(conn)
    finally:
        engine.dispose()


def test_expand_and_contract_on_a_fresh_database(tmp_path: Path, mariadb: MariaDB):
    """The commands deployment tools run, on a database Converge has never seen, Converge alone."""
    stack = NeutronStack(tmp_path, mariadb=mariadb)
    stack.workdir.mkdir(parents=True, exist_ok=True)
    stack.db_url = mariadb.create_database(stack.database)
    stack.write_config()
    assert "0001_initial (branchpoint)" in succeeds(stack, *SUBPROJECT, "check_migration")
    succeeds(stack, *SUBPROJECT, "upgrade", "--expand")
    assert schema_state(stack).stage is migrate.Stage.CONTRACT_PENDING
    assert offline_migrations(stack)
    succeeds(stack, *SUBPROJECT, "upgrade", "--contract")
    assert not offline_migrations(stack)
    succeeds(stack, *SUBPROJECT, "upgrade", "heads")
    assert schema_state(stack).stage is migrate.Stage.CURRENT


@dataclass
class Writers:
    """Clients creating a network and a port on it, in turn across PROJECTS, until each has made AFTER
    after the expand."""

    stack: NeutronStack
    created: list[tuple[float, str, str]] = field(default_factory=list)  # (started at, network id, port id)
    errors: list[BaseException] = field(default_factory=list)
    after: threading.Event = field(default_factory=threading.Event)  # set when the expand has finished

    def run(self, n: int) -> None:
        cloud: Connection = self.stack.connection()
        made_after, i = 0, 0
        try:
            while made_after < AFTER:
                project = PROJECTS[(n + i) % len(PROJECTS)]
                began, counts = time.monotonic(), self.after.is_set()
                net = cloud.network.create_network(**owned(project, name=f"w{n}-{i}"))
                port = cloud.network.create_port(**owned(project, network_id=net.id, name=f"w{n}-{i}"))
                self.created.append((began, net.id, port.id))
                made_after += counts
                i += 1
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.errors.append(err)


@pytest.fixture
def first_release_stack(tmp_path: Path, mariadb: MariaDB, fabric: FabricProcess) -> Iterator[NeutronStack]:
    stack = converge_stack(tmp_path / "neutron", mariadb=mariadb, fabric=fabric)
    stack.migrate = lambda: at_first_release(stack)  # type: ignore[method-assign]
    with stack:
        yield stack


@pytest.mark.timeout(600)  # a Neutron stack, three writers, neutron-db-manage and neutron-status four times each
def test_online_expand_under_writes_then_contract(first_release_stack: NeutronStack, fabric: FabricProcess):
    """Expand while API workers record changes and a sync worker drains them; nothing is lost, the checks
    say what to do at each step, and the schema ends exactly as the code declares it."""
    stack = first_release_stack
    cloud = stack.connection()
    checks = converge_checks(stack)
    assert checks["Converge database schema"][0] == FAILURE, checks
    assert "upgrade --expand" in checks["Converge database schema"][1]

    before = [cloud.network.create_network(**owned(p, name="before")).id for p in PROJECTS]
    writers = Writers(stack)
    threads = [threading.Thread(target=writers.run, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    try:
        while len(writers.created) < WRITERS and not writers.errors:  # writes under way
            time.sleep(0.05)
        began = time.monotonic()
        succeeds(stack, *SUBPROJECT, "upgrade", "--expand")
        ended = time.monotonic()
    finally:
        writers.after.set()  # each writer makes AFTER more, then stops
        for t in threads:
            t.join(timeout=120)
    assert writers.errors == []
    during = [c for c in writers.created if began <= c[0] < ended]
    assert during, "no create started while the expand ran"

    checks = converge_checks(stack)
    assert checks["Converge database schema"][0] == WARNING and "upgrade --contract" in \
        checks["Converge database schema"][1], checks
    assert offline_migrations(stack)
    succeeds(stack, *SUBPROJECT, "upgrade", "--contract")
    assert not offline_migrations(stack)
    succeeds(stack, *SUBPROJECT, "check_migration")
    succeeds(stack, "upgrade", "heads")  # every project: nothing left to do

    state = wait_converged(cloud, fabric, *PROJECTS)
    written = {*before, *(i for c in writers.created for i in c[1:])}
    assert written <= {oid for _, oid in state}, "a create the API answered is missing from Neutron's state"
    engine = db.make_engine(stack.db_url)
    try:
        with engine.connect() as conn:
            recorded = {r.id for r in conn.execute(sqlalchemy.text("SELECT id FROM converge_desired"))}
            pending = conn.execute(sqlalchemy.text("SELECT COUNT(*) FROM converge_journal")).scalar_one()
            assert migrate.schema_state(conn).stage is migrate.Stage.CURRENT
    finally:
        engine.dispose()
    assert written <= recorded
    assert pending == 0
    checks = converge_checks(stack)
    assert {name: code for name, (code, _) in checks.items()} == {
        "Converge database schema": SUCCESS, "Converge sync workers": SUCCESS, "Converge journal": SUCCESS}, checks
