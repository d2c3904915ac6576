"""The sync worker as a Neutron process runs it: the engine's :class:`~converge.engine.worker.Worker` in a
thread, against Neutron's own database (the converge tables live there) and the backend ``[converge] backend``
chooses (``converge.backends.select``), beside the port-status listener (port_status.py) that turns the ports
the backend reports up ACTIVE through ML2's plugin loaded in the same process.

:class:`SyncWorker` is that pair as an oslo.service service. ``get_workers()`` hands ``[converge]
sync_workers`` of them to ``neutron-periodic-workers``, which starts each in its own process; ``converge-agent``
(agent.py) runs one, on a host of its own, under oslo.service's launcher. Either way oslo.service (cotyledon)
ends the process as soon as :meth:`SyncWorker.stop` returns, so it returns only once the worker has released
its leases (or given up on the database).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

# Neutron first: importing it selects oslo.service's threading backend, which importing neutron_lib.worker
# would otherwise fix to eventlet (the default) for the whole process.
import neutron  # noqa: F401
from neutron_lib import worker as neutron_worker
from oslo_config import cfg

from converge.backends.select import make_backend
from converge.core.inifile import LEASE_KEY, WORKER_KEYS
from converge.engine import metrics
from converge.engine.worker import Worker, WorkerConfig
from converge.neutron import config, recorder
from converge.neutron.port_status import PortStatusListener
from converge.store import db, leases
from converge.store.leases import LeaseTiming

log = logging.getLogger(__name__)


def worker_config(conf: cfg.ConfigOpts) -> WorkerConfig:
    """The engine worker's settings from ``[converge]`` (its options and WorkerConfig's fields share names)."""
    opts = conf[config.GROUP]
    d = opts[LEASE_KEY]
    return WorkerConfig(**{key: opts[key] for key in WORKER_KEYS},
                        lease=LeaseTiming(duration=d, renew_every=d / 3, renew_deadline=d * 2 / 3))


def build_worker(conf: cfg.ConfigOpts) -> Worker:
    """An engine worker configured from Neutron's configuration."""
    config.register(conf)
    worker_id = leases.new_worker_id()
    backend = make_backend(config.backend_settings(conf, writer=worker_id))
    return Worker(db.make_engine(conf.database.connection), backend, worker_config(conf), worker_id=worker_id)


class SyncWorker(neutron_worker.BaseWorker):  # type: ignore[misc]
    """One sync worker and its port-status listener, started in the process that runs it."""

    def __init__(self, desc: str = "converge sync worker", *, index: int = 0) -> None:
        super().__init__(worker_process_count=1, desc=desc)
        self.index = index  # which of neutron-periodic-workers' sync workers: its metrics port is PORT + index
        self._worker: Worker | None = None
        self._thread: threading.Thread | None = None
        self._ports: PortStatusListener | None = None
        self._stop_metrics: Callable[[], None] | None = None

    def start(self, **kwargs: Any) -> None:
        super().start(**kwargs)
        self._worker = build_worker(cfg.CONF)
        self._thread = threading.Thread(target=self._worker.run, name="converge-sync", daemon=True)
        self._thread.start()
        recorder.register_nudge(self._worker.nudge)  # changes recorded in this process wake it at once
        self._ports = PortStatusListener(self._worker.backend,
                                         resync_interval=cfg.CONF.converge.port_status_resync_interval)
        self._ports.start()
        self._serve_metrics(self._worker)
        log.info("converge sync worker %s started", self._worker.id)

    def _serve_metrics(self, worker: Worker) -> None:
        opts = cfg.CONF.converge
        if not opts.metrics_port:
            return
        port = opts.metrics_port + self.index
        try:
            self._stop_metrics = metrics.serve(worker.metrics.registry, opts.metrics_host, port)
        except OSError as err:  # the worker still syncs: metrics are not worth stopping it for
            log.error("converge sync worker %s cannot serve metrics on %s:%d: %s ([converge] metrics_port)",
                      worker.id, opts.metrics_host, port, err.strerror)

    def stop(self) -> None:
        """Stop following ports, stop the worker and wait until it has released its leases."""
        if self._ports is not None:
            self._ports.stop()
        if self._worker is not None:
            self._worker.stop()
        self.wait()
        if self._stop_metrics is not None:
            self._stop_metrics()
            self._stop_metrics = None

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def reset(self) -> None:
        pass
