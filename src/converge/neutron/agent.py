"""``converge-agent``: Converge's sync worker as an OpenStack service of its own, for a Neutron deployment that
runs sync workers outside ``neutron-periodic-workers`` (``[converge] sync_workers = 0``, or more workers on
other hosts; all of them share the projects through leases).

It does for Converge what ``neutron-periodic-workers`` does, alone: reads Neutron's configuration with
oslo.config (``--config-file``, repeated, and ``--config-dir``; without them, where oslo.config looks for
project ``neutron``: ``/etc/neutron/neutron.conf``, ``/etc/neutron/neutron.conf.d`` …), logs through oslo.log
(``--log-file``, ``--debug``, ``--log-config-append``, ``--use-syslog`` …), loads Neutron's core and service
plugins — ML2 with Converge's drivers, through which the port-status listener turns the ports the controller
reports up ACTIVE — and runs one :class:`~converge.neutron.worker.SyncWorker` (the worker and that listener,
as in ``neutron-periodic-workers``) under oslo.service's launcher, which forks it as a child and handles the
signals as every OpenStack service's launcher does:

- SIGTERM: the worker stops and releases its leases before the process ends, so the other workers take its
  projects at their next look (``graceful_shutdown_timeout``, 60 s by default, bounds the wait);
- SIGINT: the child ends at once (leases then expire after ``lease_duration``);
- SIGHUP: the configuration files are read again and the worker restarts with them (its leases are
  released, then taken again); logging options take effect at the next start.
"""

from __future__ import annotations

import importlib.metadata
import logging
import sys
from collections.abc import Sequence

# Neutron first: importing it selects oslo.service's threading backend, before oslo_service.service loads.
from neutron import manager
from neutron.api import extensions
from neutron.common import config as n_config
from neutron_lib import rpc as n_rpc
from neutron_lib.api import attributes
from oslo_config import cfg
from oslo_log import log as oslo_log
from oslo_service import service  # type: ignore[import-untyped]

from converge.neutron import config
from converge.neutron.worker import SyncWorker

PROG = "converge-agent"
LOG = logging.getLogger(__name__)


class AgentError(Exception):
    """The agent cannot start with this configuration; the message says what to give it."""


def configure(argv: Sequence[str]) -> None:
    """Register Neutron's and Converge's options, parse the command line and the files it names, set up
    oslo.log and Guru Meditation Reports (SIGUSR2), as Neutron's own programs do."""
    n_config.register_common_config_options()
    config.register(cfg.CONF)
    version = importlib.metadata.version("networking-converge")
    cfg.CONF(list(argv), project="neutron", prog=PROG, version=f"%(prog)s {version}")
    if not (cfg.CONF.config_file or cfg.CONF.config_dir):
        raise AgentError("no configuration file found: give --config-file neutron.conf --config-file "
                         "ml2_conf.ini (or --config-dir)")
    n_rpc.init(cfg.CONF)  # ML2's notifiers need a transport (fake:// when nothing listens)
    oslo_log.set_defaults(default_log_levels=oslo_log.get_default_log_levels() + n_config.EXTRA_LOG_LEVEL_DEFAULTS)
    oslo_log.setup(cfg.CONF, PROG, version=version, fix_eventlet=False)
    n_config.setup_gmr()
    LOG.info("%s %s starting; configuration files: %s; directories: %s", PROG, version,
             ", ".join(cfg.CONF.config_file) or "none", ", ".join(cfg.CONF.config_dir or ()) or "none")


def load_plugins() -> None:
    """Neutron's core and service plugins, as ``neutron-periodic-workers`` loads them; the core plugin must be
    ML2 with Converge's mechanism driver, or no port would ever be completed."""
    manager.init()
    extensions.PluginAwareExtensionManager.get_instance().extend_resources("2.0", attributes.RESOURCES)
    drivers = list(getattr(getattr(cfg.CONF, "ml2", None), "mechanism_drivers", None) or ())
    if "converge" not in drivers:
        raise AgentError(f"[ml2] mechanism_drivers is {drivers or 'empty'}, without converge: give the ML2 "
                         "configuration too (--config-file ml2_conf.ini)")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        configure(sys.argv[1:] if argv is None else argv)
        load_plugins()
    except (AgentError, cfg.Error) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    launcher = service.launch(cfg.CONF, SyncWorker(desc=PROG), workers=1, restart_method="reload")
    code = launcher.wait()
    LOG.info("%s stopped", PROG)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
