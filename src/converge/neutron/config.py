"""The ``[converge]`` options (oslo.config), registered by the driver and listed for
``oslo-config-generator`` (entry point ``oslo.config.opts`` → ``converge.neutron.config:list_opts``).

The token is a secret option: oslo.config masks it when it logs the configuration. :func:`backend_settings`
turns the options into the backend selector's settings (``converge.backends.select``).
"""

from __future__ import annotations

import logging
import os

from oslo_config import cfg

from converge.backends.select import DEFAULT_OVN_NB, BackendKind, BackendSettings, backend_kind
from converge.core.tls import TlsFiles

log = logging.getLogger(__name__)

GROUP = "converge"

OPTS = [
    cfg.StrOpt("backend", default=BackendKind.FABRIC.value,
               choices=[(BackendKind.FABRIC.value, "a controller speaking the fabric protocol over HTTP "
                                                   "(controller_urls, token)"),
                        (BackendKind.OVN.value, "OVN's Northbound DB (ovn_nb_connection)")],
               help="The controller Converge keeps in step with Neutron."),
    cfg.ListOpt("controller_urls", default=["http://127.0.0.1:8780"],
                help="Fabric controller URLs, tried in this order (failover)."),
    cfg.StrOpt("token", secret=True, help="Bearer token for the controller's API."),
    cfg.StrOpt("token_file", help="File holding the bearer token (used when 'token' is not set)."),
    cfg.FloatOpt("request_timeout", default=10.0, min=0.1, help="Seconds to wait for a controller answer."),
    cfg.FloatOpt("connect_timeout", default=2.0, min=0.1, help="Seconds to wait for a TCP connection."),
    # TLS, named as keystoneauth's session options ([nova], [placement] in neutron.conf) name theirs.
    cfg.StrOpt("cafile", help="PEM bundle of the CA(s) an https:// controller's certificate must chain to "
                              "(default: the system's trust store); the CA of ssl: OVN NB remotes."),
    cfg.StrOpt("certfile", help="Client certificate (PEM) presented to the controller, for a controller that "
                                "requires one; and to ssl: OVN NB remotes."),
    cfg.StrOpt("keyfile", help="Unencrypted private key (PEM) of certfile; readable by Neutron's user only."),
    cfg.BoolOpt("insecure", default=False,
                help="Do not verify an https:// controller's certificate (logged as a warning at start; never "
                     "in production). Not for ssl: OVN NB remotes, which are always verified."),
    cfg.ListOpt("ovn_nb_connection", default=[DEFAULT_OVN_NB],
                help="OVN Northbound DB remotes (tcp:IP:PORT, ssl:IP:PORT or unix:PATH); a clustered NB fails "
                     "over across the list."),
    cfg.FloatOpt("ovn_timeout", default=10.0, min=0.1, help="Seconds to wait for an OVN NB transaction."),
    cfg.ListOpt("ovn_gateway_chassis", default=[],
                help="Chassis names that may host router gateways, highest priority first (ovn backend)."),
    cfg.IntOpt("batch_size", default=500, min=1, help="Operations per batch sent to the controller."),
    cfg.FloatOpt("lease_duration", default=15.0, min=1.0,
                 help="Seconds a worker's lease on a project lasts without renewal; renewed every third."),
    cfg.FloatOpt("sweep_interval", default=5.0, min=0.5,
                 help="Seconds between comparisons of every project's fingerprint with the controller's."),
    cfg.FloatOpt("poll_interval", default=0.05, min=0.005,
                 help="Seconds between journal polls of an idle worker."),
    cfg.IntOpt("sync_workers", default=1, min=0,
               help="Sync worker processes neutron-periodic-workers runs (0: run them elsewhere, with "
                    "'converge-agent --config-file neutron.conf --config-file ml2_conf.ini')."),
    cfg.IntOpt("concurrency", default=4, min=1, help="Projects one worker reconciles at once."),
    cfg.IntOpt("journal_limit", default=5000, min=1,
               help="Journal rows one pass over a project reads at most (the rest wait for the next pass)."),
    cfg.FloatOpt("blocked_retry", default=2.0, min=0.01,
                 help="Seconds before a project whose objects wait for a parent (refused, or not synced yet) is "
                      "looked at again; sooner when another project syncs."),
    cfg.FloatOpt("backoff_base", default=0.5, min=0.01,
                 help="Seconds a project waits after a failed pass, doubled per consecutive failure up to "
                      "backoff_cap (each wait jittered between half and all of it)."),
    cfg.FloatOpt("backoff_cap", default=30.0, min=0.01, help="Seconds a failing project waits at most."),
    cfg.FloatOpt("membership_interval", default=0.5, min=0.01,
                 help="Seconds between a worker's looks at which workers are alive: the projects of one that "
                      "stopped cleanly are taken over at the next look."),
    cfg.FloatOpt("summary_interval", default=60.0, min=1.0,
                 help="Seconds between a worker's INFO lines saying what it did since the last one (nothing "
                      "when it did nothing)."),
    cfg.PortOpt("metrics_port", default=0,
                help="Port of a sync worker's Prometheus metrics endpoint (http://metrics_host:PORT/metrics; "
                     "0: not served). neutron-periodic-workers' sync workers take PORT, PORT+1, ... (one per "
                     "sync_workers); converge-agent takes PORT. See etc/prometheus and etc/grafana."),
    cfg.HostAddressOpt("metrics_host", default="127.0.0.1",
                       help="Address the metrics endpoint listens on."),
    cfg.FloatOpt("port_status_resync_interval", default=10.0, min=0.1,
                 help="Seconds between checks of every port Converge still holds DOWN against the "
                      "controller's port status (catches a port event missed or come too early)."),
    cfg.StrOpt("vif_type", default="ovs", help="vif_type of ports Converge binds."),
    cfg.DictOpt("vif_details", default={},
                help="vif_details of ports Converge binds (key:value pairs), over ML2/OVN's for an ovs port: "
                     "port_filter:true, connectivity:l2, bridge_name:br-int, datapath_type:system."),
    cfg.ListOpt("bind_network_types", default=["geneve", "vxlan", "vlan", "flat"],
                help="Segment types Converge binds ports on."),
    cfg.ListOpt("physical_networks", default=[],
                help="Physical networks the fabric reaches: vlan and flat segments on others are left to "
                     "other drivers (empty: any)."),
    cfg.ListOpt("bind_hosts", default=[],
                help="Hosts whose ports Converge binds, as shell-style patterns (compute-*); other hosts are "
                     "left to other drivers and filtered out of agent scheduling for Converge's segments "
                     "(empty: every host)."),
]


def register(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(OPTS, group=GROUP)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [(GROUP, OPTS)]


def token(conf: cfg.ConfigOpts) -> str:
    group = conf[GROUP]
    if group.token:
        return str(group.token)
    if group.token_file:
        _warn_if_others_read(group.token_file)
        with open(group.token_file) as f:
            return f.read().strip()
    raise ValueError("[converge] needs 'token' or 'token_file' to reach the controller")


def _warn_if_others_read(path: str) -> None:
    """The token lets its holder rewrite the fabric: say so when users other than Neutron's may read it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # reading it says what is wrong
    if mode & 0o007:
        log.warning("[converge] token_file %s is readable by other users (mode %03o): chmod 600, or 640 with "
                    "Neutron's group", path, mode & 0o777)


def backend_settings(conf: cfg.ConfigOpts, writer: str) -> BackendSettings:
    """The backend selector's settings from ``[converge]``; the token is read only for the fabric."""
    opts = conf[GROUP]
    kind = backend_kind(opts.backend)
    fabric = kind is BackendKind.FABRIC
    return BackendSettings(kind=kind, controller_urls=tuple(opts.controller_urls or ()),
                           token=token(conf) if fabric else None,
                           ovn_connections=tuple(opts.ovn_nb_connection or ()),
                           timeout=opts.request_timeout if fabric else opts.ovn_timeout,
                           connect_timeout=opts.connect_timeout,
                           gateway_chassis=tuple(opts.ovn_gateway_chassis or ()), writer=writer,
                           tls=TlsFiles(ca_file=opts.cafile, cert_file=opts.certfile, key_file=opts.keyfile,
                                        insecure=opts.insecure))
