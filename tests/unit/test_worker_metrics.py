"""A worker's metrics, read the way Prometheus reads them (the text exposition, parsed), while the worker
does real work against a SQLite store and the in-memory controller: every figure is checked against what
happened, so a counter that is not incremented, or a gauge that reads the wrong thing, fails."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import yaml
from memory_support import change, record
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.engine import Engine

from converge.core.errors import ControllerUnavailable
from converge.core.ids import WorkerId
from converge.engine.worker import Worker, WorkerConfig
from converge.store.leases import LeaseTiming
from converge.testing.clock import FakeClock
from converge.testing.memory import MemoryBackend


def scrape(worker: Worker) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the worker's registry: (name, sorted labels) -> value."""
    text = generate_latest(worker.metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def make(engine: Engine, backend: MemoryBackend, clock: FakeClock | None = None, **overrides: float) -> Worker:
    config = WorkerConfig(poll_interval=0.01, sweep_interval=3600.0, concurrency=1, blocked_retry=3600.0,
                          lease=LeaseTiming(duration=60.0, renew_every=20.0, renew_deadline=40.0), **overrides)
    return Worker(engine, backend, config, worker_id=WorkerId("worker-a"), clock=clock or FakeClock())


def topology(root: str) -> list:
    return [change(root, "network", f"n-{root}", name=root),
            change(root, "subnet", f"s-{root}", network_id=f"n-{root}", cidr="10.0.0.0/24"),
            change(root, "port", f"p-{root}", network_id=f"n-{root}")]


def test_a_drain_is_counted_batch_by_batch_and_change_by_change(engine: Engine) -> None:
    backend = MemoryBackend()
    w = make(engine, backend)
    record(engine, *topology("project-1"), *topology("project-2"))
    before = scrape(w)
    assert value(before, "converge_journal_depth") == 6
    assert value(before, "converge_journal_oldest_age_seconds") >= 0
    assert value(before, "converge_leases_held") == 0
    assert w.run_until_idle(10)
    after = scrape(w)
    assert value(after, "converge_store_up") == 1
    assert value(after, "converge_journal_depth") == 0
    assert value(after, "converge_journal_oldest_age_seconds") == 0
    assert value(after, "converge_leases_held") == 2
    assert value(after, "converge_operations_applied_total") == 6
    assert value(after, "converge_batches_total", outcome="applied") == len(backend.batches) == 2
    assert value(after, "converge_passes_total", outcome="synced") == 2
    assert value(after, "converge_leases_taken_total") == 2
    assert value(after, "converge_change_applied_seconds_count") == 6  # one observation per change
    assert value(after, "converge_controller_up", endpoint="memory://") == 1
    assert value(after, "converge_controller_state", endpoint="memory://", state="up") == 1
    w.shutdown()


def test_refusals_blocked_objects_failures_and_repairs_each_show(engine: Engine) -> None:
    backend = MemoryBackend()
    w = make(engine, backend)
    backend.reject("subnet", "s-project-1")
    record(engine, *topology("project-1"))
    assert w.run_until_idle(10)
    s = scrape(w)
    assert value(s, "converge_batches_total", outcome="refused") == 1
    assert value(s, "converge_objects_unsynced", state="error") == 1
    assert value(s, "converge_objects_unsynced", state="blocked") == 0
    # a refused object's change was settled, not applied: only the network and port count as applied
    assert value(s, "converge_change_applied_seconds_count") == 2
    # the controller goes away for the next change: a failed batch, a root backing off, the endpoint down
    backend.fail_next(100, ControllerUnavailable("connection refused"))
    record(engine, change("project-1", "network", "n-project-1", "update", revision=2, name="renamed"))
    w.step()
    s = scrape(w)
    assert value(s, "converge_passes_total", outcome="temporary") == 1
    assert value(s, "converge_roots_backing_off") == 1
    assert value(s, "converge_journal_depth") == 1
    assert value(s, "converge_controller_up", endpoint="memory://") == 0
    backend.fail_next(0)
    # drift behind Converge's back, found by a sweep: one repair, one object fixed, one sweep timed
    backend.drift("project-1", "network", "n-project-1", None)
    sweeps = value(s, "converge_sweep_duration_seconds_count")  # the first step sweeps too
    w._sweep()
    w.clock.advance(60.0)  # type: ignore[attr-defined]
    assert w.run_until_idle(10)
    s = scrape(w)
    assert value(s, "converge_repairs_total") == 1
    assert value(s, "converge_repair_objects_fixed_total") == 1
    assert value(s, "converge_sweep_duration_seconds_count") == sweeps + 1
    assert value(s, "converge_roots_backing_off") == 0
    w.shutdown()


def test_a_store_that_cannot_answer_a_scrape_says_so_and_the_rest_is_served(engine: Engine) -> None:
    backend = MemoryBackend()
    w = make(engine, backend)
    record(engine, *topology("project-1"))
    assert w.run_until_idle(10)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE converge_journal"))  # the backlog query now fails
    s = scrape(w)
    assert value(s, "converge_store_up") == 0
    assert ("converge_journal_depth", ()) not in s
    assert value(s, "converge_leases_held") == 1
    assert value(s, "converge_operations_applied_total") == 3


def test_the_periodic_summary_says_what_was_done_and_nothing_when_idle(engine: Engine,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    backend = MemoryBackend()
    clock = FakeClock()
    w = make(engine, backend, clock, summary_interval=60.0)
    record(engine, *topology("project-1"))
    assert w.run_until_idle(10)
    caplog.set_level(logging.INFO, logger="converge.engine.worker")
    clock.advance(61.0)
    w.step()
    lines = [r.getMessage() for r in caplog.records if "last 60 s" in r.getMessage()]
    assert lines == ["worker worker-a: 1 roots held; last 60 s: 3 operations applied in 1 batches, 0 refused, "
                     "0 repairs (0 objects fixed), 0 leases lost; 0 roots backing off"]
    caplog.clear()
    clock.advance(61.0)
    w.step()
    assert not [r for r in caplog.records if "last 60 s" in r.getMessage()]
    w.shutdown()


def exported_names(engine: Engine) -> set[str]:
    """Every series name a worker exports, histogram and counter suffixes included."""
    w = make(engine, MemoryBackend())
    record(engine, *topology("project-1"))
    assert w.run_until_idle(10)
    names = {name for name, _ in scrape(w)}
    w.shutdown()
    return names


def referenced(expr: str) -> set[str]:
    return set(re.findall(r"\bconverge_[a-z_]+", expr))


def test_every_series_the_alert_rules_and_the_dashboard_use_is_exported(engine: Engine) -> None:
    """A renamed metric would leave an alert that never fires: the shipped rules and dashboard may only
    name series a worker exports."""
    names = exported_names(engine)
    etc = Path(__file__).parents[2] / "etc"
    rules = yaml.safe_load((etc / "prometheus" / "converge-alerts.yaml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((etc / "grafana" / "converge-dashboard.json").read_text())
    exprs += [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set().union(*map(referenced, exprs))
    assert len(used) >= 10, used
    assert used <= names, f"not exported: {sorted(used - names)}"
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"].startswith("Converge") and rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]
