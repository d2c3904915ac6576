"""Reading Neutron's INI configuration files without oslo.config, so that the CLI stays free of Neutron's
libraries: ``converge status|journal|drift … --config-file neutron.conf`` and ``converge sync run
--config-file …`` take the database and the ``[converge]`` options from the files Neutron reads. Later files
win, as in oslo.config; a ``--config-dir`` is not read (``converge-agent``, an oslo.config program, reads it).

The one list of ``[converge]`` options is ``converge.neutron.config.OPTS`` (oslo.config: the Neutron processes
and ``converge-agent``). Each of them is named here once: read by the CLI (:data:`BACKEND_KEYS`,
:data:`WORKER_KEYS`, :data:`LEASE_KEY`, :data:`METRICS_KEYS`) or used by the Neutron processes alone
(:data:`NEUTRON_ONLY`). A unit test (tests/unit/test_agent_options.py) holds the two lists together, so an
option added there cannot be ignored here unnoticed.
"""

from __future__ import annotations

import configparser
from collections.abc import Mapping

from converge.core.errors import ConfigurationError

# How to reach the controller (converge.backends.select.BackendSettings).
BACKEND_KEYS = ("backend", "controller_urls", "token", "token_file", "request_timeout", "connect_timeout",
                "ovn_nb_connection", "ovn_timeout", "ovn_gateway_chassis", "cafile", "certfile", "keyfile",
                "insecure")
# The sync worker's settings: each is the field of the same name of converge.engine.worker.WorkerConfig.
WORKER_KEYS = ("poll_interval", "sweep_interval", "batch_size", "journal_limit", "blocked_retry", "backoff_base",
               "backoff_cap", "concurrency", "membership_interval", "summary_interval")
LEASE_KEY = "lease_duration"  # WorkerConfig.lease: renewed every third, written with until two thirds
# Where a worker serves its Prometheus metrics (converge.engine.metrics; port 0: not served).
METRICS_KEYS = ("metrics_host", "metrics_port")
# Port binding and port status need Neutron's plugin in the process; sync_workers is for
# neutron-periodic-workers.
NEUTRON_ONLY = ("sync_workers", "port_status_resync_interval", "vif_type", "vif_details", "bind_network_types",
                "physical_networks", "bind_hosts")
KEYS = (*BACKEND_KEYS, *WORKER_KEYS, LEASE_KEY, *METRICS_KEYS)


def read_neutron_config(paths: list[str]) -> dict[str, str]:
    """``db`` ([database] connection) and the ``[converge]`` keys of :data:`KEYS` that are set (lists stay
    comma-separated text)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    for path in paths:
        try:
            with open(path) as f:
                parser.read_file(f, source=path)
        except OSError as err:
            raise ConfigurationError(f"cannot read config file {path}: {err.strerror}") from None
        except configparser.Error as err:
            raise ConfigurationError(f"config file {path} is not valid INI: {err}") from None
    found = {"db": parser.get("database", "connection", fallback="")}
    for key in KEYS:
        found[key] = parser.get("converge", key, fallback="")
    return {k: v.strip() for k, v in found.items() if v and v.strip()}


def number(conf: Mapping[str, str], key: str, kind: type[int] | type[float]) -> int | float | None:
    """``[converge] key`` as a number, None when unset; ConfigurationError naming the key when not one."""
    text = conf.get(key)
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        raise ConfigurationError(f"[converge] {key} {text!r} is not {'an integer' if kind is int else 'a number'}"
                                 ) from None
