"""A controller that answers again wakes the roots backing off because of it (``Backend.on_available``):
they retry at once, not at the end of a delay that grew while the controller was away (a minute here)."""

from __future__ import annotations

from memory_support import assert_in_step, change, record
from sqlalchemy.engine import Engine

from converge.core.ids import RootId, WorkerId
from converge.engine.worker import Worker, WorkerConfig
from converge.testing.memory import MemoryBackend

ROOT = "project-1"


def test_roots_backing_off_retry_as_soon_as_the_controller_answers_again(engine: Engine) -> None:
    backend = MemoryBackend()
    worker = Worker(engine, backend, WorkerConfig(poll_interval=0.01, sweep_interval=3600.0, concurrency=1,
                                                  backoff_base=60.0, backoff_cap=60.0),
                    worker_id=WorkerId("worker-a"))
    try:
        worker.step()  # the first step sweeps (one call that goes through); the next sweep is an hour away
        record(engine, change(ROOT, "network", "n1", name="blue"))
        backend.fail_next(1)
        worker.step()  # the push fails: the root waits a minute
        assert worker.failures.get(RootId(ROOT)) == 1 and not backend.docs(ROOT)
        worker.step()
        assert not backend.docs(ROOT), "retried before its backoff ended without news from the controller"
        backend.root_etag(RootId(ROOT))  # any call that goes through: the controller is back
        worker.step()
        assert_in_step(engine, backend, ROOT)
    finally:
        worker.shutdown()
