"""A backend that reports changes made behind the engine's back (``Backend.on_drift``) gets them repaired by
the next step of the worker that holds the root, without waiting for the sweep (an hour away here)."""

from __future__ import annotations

import pytest
from memory_support import assert_in_step, change, record
from sqlalchemy.engine import Engine

from converge.core.canonical import ObjectDoc
from converge.core.ids import ObjectId, WorkerId
from converge.core.kinds import Kind
from converge.engine.worker import Worker, WorkerConfig
from converge.testing.memory import MemoryBackend

ROOT = "project-1"


@pytest.fixture
def synced(engine: Engine):
    backend = MemoryBackend()
    worker = Worker(engine, backend, WorkerConfig(poll_interval=0.01, sweep_interval=3600.0, concurrency=1),
                    worker_id=WorkerId("worker-a"))
    record(engine, change(ROOT, "network", "n1", name="blue"),
           change(ROOT, "subnet", "s1", network_id="n1", cidr="10.0.0.0/24"))
    assert worker.run_until_idle(10)
    assert_in_step(engine, backend, ROOT)
    yield backend, worker
    worker.shutdown()


def test_a_drift_is_repaired_by_the_next_step_not_the_sweep(engine, synced):
    backend, worker = synced
    sweeps = backend.calls.count("roots")
    backend.drift(ROOT, "network", "n1", ObjectDoc(Kind.NETWORK, ObjectId("n1"), {"name": "tampered"}, 1))
    backend.drift(ROOT, "network", "stray", ObjectDoc(Kind.NETWORK, ObjectId("stray"), {"name": "x"}, 1))
    assert not worker.idle()  # a reported drift is work
    assert worker.run_until_idle(10)
    assert_in_step(engine, backend, ROOT)
    assert backend.calls.count("roots") == sweeps  # no sweep ran


def test_a_drift_report_that_changes_nothing_repairs_nothing(engine, synced):
    backend, worker = synced
    n1 = backend.docs(ROOT)[("network", "n1")]
    backend.drift(ROOT, "network", "n1", n1)  # rewritten as it was: the fingerprint did not move
    applied = len(backend.batches)
    assert worker.run_until_idle(10)
    assert "compare_groups" not in backend.calls and len(backend.batches) == applied


def test_a_drift_of_a_root_held_elsewhere_is_left_to_its_holder(engine, synced):
    backend, worker = synced
    backend.drift("project-2", "network", "other", ObjectDoc(Kind.NETWORK, ObjectId("other"), {}, 1))
    calls = len(backend.calls)
    assert worker.run_until_idle(10)
    assert backend.calls[calls:] == []  # not even a look at its ETag


def test_a_controller_that_cannot_answer_leaves_the_drift_to_the_sweep(engine, synced):
    backend, worker = synced
    backend.fail_next(1)
    backend.drift(ROOT, "subnet", "s1", None)
    assert worker.run_until_idle(10)
    assert ("subnet", "s1") not in backend.docs(ROOT)  # not repaired yet: the ETag could not be read
    worker.config = WorkerConfig(poll_interval=0.01, sweep_interval=0.0, concurrency=1)
    assert worker.run_until_idle(10)
    assert_in_step(engine, backend, ROOT)  # the sweep found it
