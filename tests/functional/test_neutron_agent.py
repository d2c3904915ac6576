"""``converge-agent``, the standalone sync worker, as an OpenStack service beside the real Neutron API.

The stack runs with ``[converge] sync_workers = 0`` and without ``neutron-periodic-workers``, so the agent,
started as its own process with ``--config-file neutron.conf --config-dir`` (a folder holding the ML2
configuration), is the only sync worker and the only port-status listener: a bound port turns ACTIVE only
because it loaded ML2 and follows the controller's port events. Its log is oslo.log's, in its ``--log-file``;
SIGHUP restarts its worker with the configuration read again; SIGTERM ends it with its leases released at
once (the lease lasts 60 s here, so an expiry could not pass for a release).
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy
from neutron_support import (
    DEADLINE,
    MARKS,
    converge_stack,
    module_cloud,  # noqa: F401 - the shared "cloud" fixture
    module_fabric,  # noqa: F401 - the shared "fabric" fixture
    wait_converged,
)
from prometheus_client.parser import text_string_to_metric_families

from converge.testing.fabric import FabricProcess
from converge.testing.mariadb import MariaDB
from converge.testing.neutron import NeutronStack, owned, stop_process

pytestmark = MARKS

LEASE = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


METRICS_PORT = _free_port()
PROJECT = "p-agent"
# oslo.log's default format: date time.msecs pid LEVEL logger [request context or -] message
STARTED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (\d+) INFO converge\.neutron\.worker \[[^]]*\] "
                     r"converge sync worker (\S+) started$", re.MULTILINE)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mariadb: MariaDB, fabric: FabricProcess
          ) -> Iterator[NeutronStack]:
    stack = converge_stack(tmp_path_factory.mktemp("neutron"), mariadb=mariadb, fabric=fabric, sync_workers=0,
                           lease_duration=LEASE)
    stack.periodic_workers = False  # nothing but the agent syncs or completes ports
    with stack:
        yield stack


@pytest.fixture(scope="module")
def agent(stack: NeutronStack) -> Iterator[subprocess.Popen[bytes]]:
    conf_d = stack.workdir / "neutron.conf.d"  # oslo.config reads the *.conf files of a --config-dir
    conf_d.mkdir()
    shutil.copyfile(stack.ml2_conf, conf_d / "ml2.conf")
    (conf_d / "metrics.conf").write_text(f"[converge]\nmetrics_port = {METRICS_PORT}\n")
    process = stack.start_agent("--config-file", str(stack.neutron_conf), "--config-dir", str(conf_d))
    yield process
    stop_process(process)


def pairs(stack: NeutronStack, query: str) -> dict[str, str | None]:
    """The store's rows as first column → second."""
    engine = sqlalchemy.create_engine(stack.db_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sqlalchemy.text(query)).tuples().all())
    finally:
        engine.dispose()


def workers(stack: NeutronStack) -> dict[str, str | None]:
    """The sync workers registered in the store (a stopped one removes itself): worker id → host."""
    return pairs(stack, "SELECT worker, host FROM converge_workers")


def owners(stack: NeutronStack) -> dict[str, str | None]:
    """Each root's lease holder."""
    return pairs(stack, "SELECT root, owner FROM converge_roots")


def started_workers(stack: NeutronStack) -> list[str]:
    """The worker ids the agent's log says it started, in order."""
    return [m.group(2) for m in STARTED.finditer(stack.agent_log.read_text() if stack.agent_log.exists() else "")]


def scraped() -> dict[str, float]:
    """The agent's metrics (unlabelled series), or {} while it does not answer."""
    try:
        text = httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5.0).text
    except httpx.TransportError:
        return {}
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


def wait_for(what, check, stack, deadline=DEADLINE):
    end = time.monotonic() + deadline
    while not (found := check()):
        if time.monotonic() > end:
            pytest.fail(f"{what} not within {deadline:.0f} s; the agent's output and log:\n{stack.agent_log_tail()}")
        time.sleep(0.2)
    return found


def bound_port_turns_active(cloud, fabric: FabricProcess, stack: NeutronStack, name: str, cidr: str) -> None:
    net = cloud.network.create_network(**owned(PROJECT, name=name))
    cloud.network.create_subnet(**owned(PROJECT, network_id=net.id, cidr=cidr, ip_version=4))
    port = cloud.network.create_port(**owned(PROJECT, network_id=net.id, binding_host_id="compute-1"))
    wait_for(f"port {port.id} ACTIVE", lambda: cloud.network.get_port(port.id).status == "ACTIVE", stack)
    wait_converged(cloud, fabric, PROJECT)


def test_the_agent_syncs_turns_bound_ports_active_logs_through_oslo_and_releases_its_leases_on_sigterm(
        cloud, fabric, stack, agent):
    bound_port_turns_active(cloud, fabric, stack, "agent-1", "10.71.0.0/24")
    first = wait_for("the worker's start in the agent's log", lambda: started_workers(stack), stack)[0]
    assert workers(stack).keys() == {first}  # the agent's is the only sync worker
    assert owners(stack)[PROJECT] == first
    log = stack.agent_log.read_text()
    assert re.search(r"^\S+ \S+ \d+ INFO converge\.neutron\.port_status \[[^]]*\] ports reported up: 1 turned ACTIVE",
                     log, re.MULTILINE), log[-3000:]
    metrics = wait_for("the agent's metrics ([converge] metrics_port of its --config-dir)", scraped, stack)
    assert metrics["converge_leases_held"] == 1 and metrics["converge_operations_applied_total"] >= 3
    assert metrics["converge_journal_depth"] == 0 and metrics["converge_store_up"] == 1

    agent.send_signal(signal.SIGHUP)  # the configuration read again, the worker restarted with it
    second = wait_for("a second worker after SIGHUP", lambda: started_workers(stack)[1:], stack)[0]
    assert second != first
    bound_port_turns_active(cloud, fabric, stack, "agent-2", "10.71.1.0/24")
    assert workers(stack).keys() == {second}  # the first one stopped cleanly: gone, not left to expire
    assert owners(stack)[PROJECT] == second
    # the restarted worker serves the same port (the first one's endpoint was closed with it), counting anew
    assert wait_for("the second worker's metrics", lambda: scraped().get("converge_leases_held") == 1, stack)

    assert stop_process(agent) == 0
    assert workers(stack) == {}
    assert owners(stack)[PROJECT] is None  # released at once, not left to its 60 s lease
    assert re.search(rf"worker {second} stopped and released \d+ roots", stack.agent_log.read_text())
