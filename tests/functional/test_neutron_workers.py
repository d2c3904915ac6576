"""Several sync workers at once: two run by ``neutron-periodic-workers`` (``[converge] sync_workers = 2``)
and a standalone agent (``converge sync run --config-file neutron.conf --config-file ml2_conf.ini``) share
the projects through leases; one of them killed (SIGKILL, so it gives nothing back) loses its projects when
its leases expire, and the others take them over and carry on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import sqlalchemy
from neutron_support import (
    MARKS,
    converge_stack,
    module_cloud,  # noqa: F401 - the shared "cloud" fixture
    module_fabric,  # noqa: F401 - the shared "fabric" fixture
    wait_converged,
)

from converge.testing.fabric import FabricProcess
from converge.testing.mariadb import MariaDB
from converge.testing.neutron import NeutronStack, owned, stop_process

pytestmark = MARKS

LEASE = 3.0  # seconds: short, so the takeover after a kill is quick
PROJECTS = [f"p-shared-{i}" for i in range(12)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mariadb: MariaDB, fabric: FabricProcess
          ) -> Iterator[NeutronStack]:
    with converge_stack(tmp_path_factory.mktemp("neutron"), mariadb=mariadb, fabric=fabric, sync_workers=2,
                        lease_duration=LEASE) as stack:
        yield stack


@pytest.fixture(scope="module")
def agent(stack: NeutronStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[bytes]]:
    log = open(tmp_path_factory.mktemp("agent") / "agent.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "converge.cli.main", "sync", "run", *stack.config_args()],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    yield process
    stop_process(process)
    log.close()


def owners(stack: NeutronStack) -> dict[str, str | None]:
    """Each project's lease holder, as the store says."""
    engine = sqlalchemy.create_engine(stack.db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text("SELECT root, owner FROM converge_roots")).all()
            return {r.root: r.owner for r in rows if r.root in PROJECTS}
    finally:
        engine.dispose()


def pid_of(stack: NeutronStack, worker: str) -> int:
    engine = sqlalchemy.create_engine(stack.db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sqlalchemy.text("SELECT pid FROM converge_workers WHERE worker = :w"),
                                    {"w": worker}).scalar_one())
    finally:
        engine.dispose()


def test_workers_in_neutron_and_an_agent_share_the_projects_and_survive_one_killed(cloud, stack, fabric, agent):
    nets = {}
    for i, project in enumerate(PROJECTS):
        net = cloud.network.create_network(**owned(project, name="shared-work"))
        cloud.network.create_subnet(**owned(project, network_id=net.id, cidr=f"10.60.{i}.0/24", ip_version=4))
        cloud.network.create_port(**owned(project, network_id=net.id, name="vm"))
        nets[project] = net
    wait_converged(cloud, fabric, *PROJECTS)
    # Leases move lazily: a worker that sees a root ranked to another gives it back, and the other takes
    # it at the root's next change. Change every project until the store shows the projects shared.
    deadline = time.monotonic() + 60
    while True:
        held = owners(stack)
        holders = {w for w in held.values() if w is not None}
        if len(holders) >= 2 or time.monotonic() > deadline:
            break
        for net in nets.values():
            cloud.network.update_network(net, description=f"nudge {time.monotonic():.0f}")
        wait_converged(cloud, fabric, *PROJECTS)
    assert agent.poll() is None, "the standalone agent stopped"
    assert len(holders) >= 2, f"one worker holds every project: {held}"

    victim = max(holders, key=lambda w: sum(1 for o in held.values() if o == w))
    os.kill(pid_of(stack, victim), signal.SIGKILL)
    for net in nets.values():
        cloud.network.update_network(net, description="after the kill")
    wait_converged(cloud, fabric, *PROJECTS)
    assert victim not in owners(stack).values()  # every project had a change: the others took them all
