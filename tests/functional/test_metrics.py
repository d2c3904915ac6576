"""A sync worker's metrics endpoint, scraped over HTTP while ``converge sync run`` works against the real
fabric controller: the figures follow what happens — a drain, the controller stopped (its endpoint down,
batches failing, the backlog growing and ageing), the controller back (the backlog drained)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from engine_support import change, cli_env, converge_cmd, eventually, record
from prometheus_client.parser import text_string_to_metric_families

from converge.store import db, migrate
from converge.testing.fabric import FabricProcess
from converge.testing.processes import Daemon

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str) -> Samples:
    try:
        text = httpx.get(url, timeout=5.0).text
    except httpx.TransportError:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def until(url: str, holds: Callable[[Samples], bool], what: str) -> Samples:
    """Scrape until ``holds`` is true of the samples; those samples."""
    return eventually(lambda: (lambda m: m if m and holds(m) else None)(scrape(url)), what)


def test_the_endpoint_follows_a_drain_an_outage_and_the_recovery(fabric: FabricProcess, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    engine = db.make_engine(url)
    migrate.upgrade(engine)
    port = free_port()
    metrics = f"http://127.0.0.1:{port}/metrics"
    worker = Daemon("worker", converge_cmd("sync", "run", "--db", url, "--metrics-port", str(port),
                                           "--poll-interval", "0.02"),
                    log=tmp_path / "worker.log", env=cli_env(fabric))
    worker.start()
    try:
        worker.wait_until(lambda: bool(scrape(metrics)), "the metrics endpoint")
        record(engine, [change(f"p{i}", "network", f"n{i}", name=f"n{i}") for i in range(4)])
        up = ("converge_controller_up", (("endpoint", fabric.url),))
        s = until(metrics, lambda m: m.get(("converge_operations_applied_total", ())) == 4, "4 operations applied")
        assert s[("converge_journal_depth", ())] == 0
        assert s[("converge_leases_held", ())] == 4
        assert s[("converge_change_applied_seconds_count", ())] == 4
        assert s[up] == 1 and s[("converge_store_up", ())] == 1

        fabric.stop()
        record(engine, [change("p0", "network", "n0", "update", revision=2, name="renamed")])
        down = until(metrics, lambda m: m.get(up) == 0, "the endpoint seen down")
        assert down[("converge_journal_depth", ())] == 1
        assert down[("converge_batches_total", (("outcome", "failed"),))] >= 1
        assert down[("converge_controller_state", (("endpoint", fabric.url), ("state", "open")))] == 1
        aged = until(metrics, lambda m: m.get(("converge_journal_oldest_age_seconds", ()), 0) > 1.0,
                     "the pending change ageing")
        assert aged[("converge_roots_backing_off", ())] == 1

        fabric.start()
        back = until(metrics, lambda m: m.get(("converge_journal_depth", ())) == 0,
                     "the backlog drained after the controller's return")
        assert back[("converge_operations_applied_total", ())] == 5
        assert back[up] == 1
        assert back[("converge_journal_oldest_age_seconds", ())] == 0
        # the outage's change waited over a second: the latency histogram saw it
        assert back[("converge_change_applied_seconds_bucket", (("le", "1.0"),))] == 4
    finally:
        worker.stop()
        engine.dispose()
    log = (tmp_path / "worker.log").read_text()
    assert "HTTP Request" not in log and "Traceback" not in log, log


def test_a_metrics_port_in_use_is_one_clear_error(fabric: FabricProcess, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(converge_cmd("sync", "run", "--db", f"sqlite:///{tmp_path / 's.sqlite'}",
                                             "--metrics-port", str(port), "--until-idle", "--timeout", "5"),
                                env=cli_env(fabric), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


pytestmark = pytest.mark.timeout(300)
