"""A sync worker's Prometheus metrics: what an operator's alerting needs to know how far behind the
controller is, and why.

Two kinds of series, in one registry per worker (several workers can live in one process, as in tests):

- counters and histograms the worker and its reconciler update as they go: batches by outcome, operations
  applied, passes by outcome, repairs and objects fixed, leases taken and lost, sweep duration, and the
  latency from a change's commit in Neutron to the controller's acknowledgement of it;
- gauges read when scraped: the store's backlog (journal depth, oldest pending change, refused and blocked
  objects: every worker's, so alert on ``max`` over workers, not ``sum``), this worker's leases and roots
  backing off, and each controller endpoint's state as the backend sees it.

Labels are bounded: outcomes and states are fixed vocabularies, endpoints are the configured URLs; no
label names a project or an object. Served by :func:`serve` (``prometheus_client``'s HTTP server) on an
address the operator chooses, 127.0.0.1 by default.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from converge.backends.base import EndpointHealth
from converge.core.errors import ConvergeError
from converge.store import db, report

log = logging.getLogger(__name__)
# No ``*_created`` twin of every counter: it would double the series for nothing here.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Outcomes of one batch sent to the controller.
APPLIED, PRECONDITION_FAILED, REFUSED, FENCED, FAILED = "applied", "precondition_failed", "refused", "fenced", \
    "failed"
# Outcomes of one pass over a root (the worker's settle).
PASS_OUTCOMES = ("synced", "blocked", "lease_lost", "race_lost", "temporary", "failed")
# Every endpoint state a backend reports (the fabric's breaker, or a refused token; OVN's connection).
ENDPOINT_STATES = ("closed", "half-open", "open", "unauthorized", "up", "down")
_HEALTHY = {"closed", "up"}  # half-open is a trial after failures, not health: alerts must not flap on it

# Seconds from a change's commit to its acknowledgement: sub-second when healthy, minutes in an outage.
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_SWEEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class WorkerView(Protocol):
    """What the scrape reads of a live worker (:class:`converge.engine.worker.Worker` has it)."""

    @property
    def held_count(self) -> int: ...

    @property
    def backing_off(self) -> int: ...

    def health(self) -> list[EndpointHealth]: ...


@dataclass
class Totals:
    """Counter values at one moment, for the worker's periodic summary line."""

    applied: float
    batches: float
    refused: float
    repairs: float
    fixed: float
    lost: float


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.batches = Counter("converge_batches", "Batches sent to the controller, by outcome "
                               "(applied, precondition_failed: a 412, refused, fenced, failed)", ["outcome"],
                               registry=r)
        self.operations = Counter("converge_operations_applied", "Operations in batches the controller applied",
                                  registry=r)
        self.passes = Counter("converge_passes", "Passes over one root, by outcome", ["outcome"], registry=r)
        self.repairs = Counter("converge_repairs", "Roots repaired (their ETag differed from the acknowledged one)",
                               registry=r)
        self.fixed = Counter("converge_repair_objects_fixed", "Objects repairs found differing on the controller",
                             registry=r)
        self.leases_taken = Counter("converge_leases_taken", "Leases on roots this worker took", registry=r)
        self.leases_lost = Counter("converge_leases_lost", "Leases this worker lost before giving them up",
                                   registry=r)
        self.sweep_seconds = Histogram("converge_sweep_duration_seconds", "One sweep: every root's ETag compared",
                                       buckets=_SWEEP_BUCKETS, registry=r)
        self.applied_seconds = Histogram("converge_change_applied_seconds",
                                         "From a change's commit (the journal row's time) to the controller's "
                                         "acknowledgement of it", buckets=_LATENCY_BUCKETS, registry=r)
        for outcome in (APPLIED, PRECONDITION_FAILED, REFUSED, FENCED, FAILED):
            self.batches.labels(outcome)  # every series exists from the start: rate() sees the first one
        for outcome in PASS_OUTCOMES:
            self.passes.labels(outcome)

    def batch(self, outcome: str, operations: int = 0) -> None:
        self.batches.labels(outcome).inc()
        if operations:
            self.operations.inc(operations)

    def repaired(self, fixed: int) -> None:
        self.repairs.inc()
        self.fixed.inc(fixed)

    def applied(self, committed_at: Iterable[float], now: float | None = None) -> None:
        """Changes acknowledged now, by their journal rows' times (the database's clock)."""
        at = time.time() if now is None else now
        for t in committed_at:
            self.applied_seconds.observe(max(0.0, at - t))

    def totals(self) -> Totals:
        return Totals(applied=_value(self.operations), batches=_value(self.batches),
                      refused=_value(self.batches, outcome=REFUSED), repairs=_value(self.repairs),
                      fixed=_value(self.fixed), lost=_value(self.leases_lost))

    def watch(self, engine: Engine, worker: WorkerView) -> None:
        """Add the gauges read at scrape time: the store's backlog and this worker's state."""
        self.registry.register(_Scraped(engine, worker))


def _value(counter: Counter, **labels: str) -> float:
    """A counter's total over the series matching ``labels`` (read from the counter, not the registry,
    whose scrape-time gauges would query the store)."""
    return sum(s.value for m in counter.collect() for s in m.samples
               if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in labels.items()))


class _Scraped(Collector):
    def __init__(self, engine: Engine, worker: WorkerView) -> None:
        self.engine = engine
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("converge_store_up", "1 if the store answered this scrape's backlog query")
        try:
            with db.translated(), self.engine.connect() as conn:
                t = report.totals(conn)
        except ConvergeError as err:
            log.debug("metrics: store not readable: %s", err)
            up.add_metric([], 0.0)
            yield up
        else:
            up.add_metric([], 1.0)
            yield up
            yield _gauge("converge_journal_depth", "Changes recorded and not yet applied (every root's)", t.pending)
            yield _gauge("converge_journal_oldest_age_seconds", "Age of the oldest change not yet applied (0: none)",
                         t.oldest_pending_age)
            objects = GaugeMetricFamily("converge_objects_unsynced", "Objects refused by the controller (error) or "
                                        "waiting for a parent (blocked), every root's", labels=["state"])
            objects.add_metric(["error"], float(t.errors))
            objects.add_metric(["blocked"], float(t.blocked))
            yield objects
        yield _gauge("converge_leases_held", "Roots this worker holds a lease on", self.worker.held_count)
        yield _gauge("converge_roots_backing_off", "Roots of this worker waiting out a backoff after failures",
                     self.worker.backing_off)
        yield from _endpoints(self.worker.health())


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, documentation)
    g.add_metric([], float(value))
    return g


def _endpoints(health: list[EndpointHealth]) -> Iterator[Metric]:
    up = GaugeMetricFamily("converge_controller_up", "1 if the endpoint takes requests (breaker closed, OVN "
                           "connected)", labels=["endpoint"])
    state = GaugeMetricFamily("converge_controller_state", "The endpoint's state as the backend sees it "
                              "(1 for the current one)", labels=["endpoint", "state"])
    for h in health:
        up.add_metric([h.url], 1.0 if h.state in _HEALTHY else 0.0)
        for s in ENDPOINT_STATES:
            state.add_metric([h.url, s], 1.0 if h.state == s else 0.0)
    yield up
    yield state


def serve(registry: CollectorRegistry, host: str, port: int) -> Callable[[], None]:
    """Serve ``registry`` at ``http://host:port/metrics`` from a daemon thread; returns a stop function."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    log.info("metrics at http://%s:%d/metrics", host, server.server_port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
