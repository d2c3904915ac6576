"""Prometheus metrics of the controller, served at ``GET /metrics`` (normal token required).

Why: benchmarks read the controller's own count of applied batches and operations to check the engine's
claims, and an operator sees refusals by status at a glance. Each application gets its own registry so
several controllers can live in one test process. Updated by ``api.py``; served by ``app.py``.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    def __init__(self, objects: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.batches = Counter("converge_fabric_batches", "Batch attempts by the HTTP status answered",
                               ["status"], registry=self.registry)
        self.operations = Counter("converge_fabric_operations_applied",
                                  "Operations of applied batches", registry=self.registry)
        self.objects = Gauge("converge_fabric_objects", "Objects held, over all roots",
                             registry=self.registry)
        self.objects.set_function(lambda: float(objects()))

    def batch(self, status: int, *, operations: int = 0) -> None:
        self.batches.labels(str(status)).inc()
        if operations:
            self.operations.inc(operations)

    async def handle(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})
