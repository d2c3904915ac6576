"""The sync worker as Neutron runs it: ``get_workers()`` hands these to ``neutron-periodic-workers``, which
starts each in its own process. It runs the engine's :class:`~converge.engine.worker.Worker` in a thread
against Neutron's own database (the converge tables live there) and the backend ``[converge] backend``
chooses (``converge.backends.select``), and follows that backend's port events (port_status.py).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from neutron_lib import worker as neutron_worker
from oslo_config import cfg

from converge.backends.select import make_backend
from converge.engine.worker import Worker, WorkerConfig
from converge.neutron import config, recorder
from converge.neutron.port_status import PortStatusListener
from converge.store import db, leases
from converge.store.leases import LeaseTiming

log = logging.getLogger(__name__)


def build_worker(conf: cfg.ConfigOpts) -> Worker:
    """An engine worker configured from Neutron's configuration (also used by the standalone agent)."""
    config.register(conf)
    opts = conf.converge
    worker_id = leases.new_worker_id()
    backend = make_backend(config.backend_settings(conf, writer=worker_id))
    d = opts.lease_duration
    settings = WorkerConfig(poll_interval=opts.poll_interval, sweep_interval=opts.sweep_interval,
                            batch_size=opts.batch_size, concurrency=opts.concurrency,
                            lease=LeaseTiming(duration=d, renew_every=d / 3, renew_deadline=d * 2 / 3))
    return Worker(db.make_engine(conf.database.connection), backend, settings, worker_id=worker_id)


class SyncWorker(neutron_worker.BaseWorker):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(worker_process_count=1, desc="converge sync worker")
        self._worker: Worker | None = None
        self._thread: threading.Thread | None = None
        self._ports: PortStatusListener | None = None

    def start(self, **kwargs: Any) -> None:
        super().start(**kwargs)
        self._worker = build_worker(cfg.CONF)
        self._thread = threading.Thread(target=self._worker.run, name="converge-sync", daemon=True)
        self._thread.start()
        recorder.register_nudge(self._worker.nudge)  # changes recorded in this process wake it at once
        self._ports = PortStatusListener(self._worker.backend)
        self._ports.start()
        log.info("converge sync worker %s started", self._worker.id)

    def stop(self) -> None:
        if self._ports is not None:
            self._ports.stop()
        if self._worker is not None:
            self._worker.stop()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def reset(self) -> None:
        pass
