"""Choosing the backend from configuration: the one place that knows every implementation.

``make_backend(BackendSettings(...))`` returns the engine's ``Backend`` for ``kind``: ``fabric`` (the fabric
protocol over HTTP, ``backends.fabric``) or ``ovn`` (OVN's Northbound DB, ``backends.ovn``). Pure of any
configuration library: the Neutron side (``[converge]`` options, ``neutron/config.py``) and the CLI (flags,
environment, INI files, ``cli/context.py``) each fill the settings their way and call this. The OVN
backend is imported only when chosen, so a fabric deployment never loads ovsdbapp.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from converge.backends.base import Backend
from converge.backends.fabric import FabricClient
from converge.core.errors import ConfigurationError
from converge.core.tls import TlsFiles

DEFAULT_OVN_NB = "tcp:127.0.0.1:6641"


class BackendKind(enum.StrEnum):
    FABRIC = "fabric"
    OVN = "ovn"


def backend_kind(value: str) -> BackendKind:
    """The kind named by ``value`` (case and blanks ignored), or ConfigurationError naming the choices."""
    try:
        return BackendKind(value.strip().lower())
    except ValueError:
        choices = ", ".join(k.value for k in BackendKind)
        raise ConfigurationError(f"unknown backend {value!r}: expected one of {choices}") from None


@dataclass(frozen=True)
class BackendSettings:
    """What any backend may need; each kind reads its own fields.

    ``controller_urls`` and ``token`` (fabric: tried in order, failover), ``ovn_connections`` (ovn: NB
    remotes; a clustered NB fails over across them), ``timeout`` (seconds per request or transaction),
    ``connect_timeout`` (fabric: seconds per TCP connection), ``gateway_chassis`` (ovn: chassis that may
    host router gateways, highest priority first), ``writer`` (who writes, for the controller's audit),
    ``tls`` (CA, client certificate and key: the fabric's ``https://`` URLs, and OVN's ``ssl:`` remotes).
    """

    kind: BackendKind = BackendKind.FABRIC
    controller_urls: tuple[str, ...] = ()
    token: str | None = None
    ovn_connections: tuple[str, ...] = (DEFAULT_OVN_NB,)
    timeout: float = 10.0
    connect_timeout: float = 2.0
    gateway_chassis: tuple[str, ...] = ()
    writer: str = "converge"
    tls: TlsFiles = TlsFiles()


def make_backend(settings: BackendSettings) -> Backend:
    """The backend ``settings.kind`` names; ConfigurationError when its settings cannot work."""
    if settings.kind is BackendKind.FABRIC:
        return _fabric_backend(settings)
    if settings.kind is BackendKind.OVN:
        return _ovn_backend(settings)
    raise ConfigurationError(f"unknown backend {settings.kind!r}")


def _fabric_backend(settings: BackendSettings) -> Backend:
    if not settings.controller_urls:
        raise ConfigurationError("the fabric backend needs controller URLs ([converge] controller_urls)")
    if not settings.token:
        raise ConfigurationError("the fabric backend needs the controller's token ([converge] token or token_file)")
    return FabricClient(list(settings.controller_urls), settings.token, timeout=settings.timeout,
                        connect_timeout=settings.connect_timeout, writer=settings.writer, tls=settings.tls)


def _ovn_backend(settings: BackendSettings) -> Backend:
    # Imported here: it loads ovsdbapp and the OVS IDL, which a fabric deployment does not need.
    from converge.backends.ovn import OvnBackend

    if any(remote.startswith("ssl:") for remote in settings.ovn_connections):
        _ovn_ssl(settings.tls)

    return OvnBackend(list(settings.ovn_connections), timeout=settings.timeout, writer=settings.writer,
                      gateway_chassis=settings.gateway_chassis)


def _ovn_ssl(files: TlsFiles) -> None:
    """python-ovs keeps one private key, certificate and CA for every ``ssl:`` stream of the process (as
    ML2/OVN sets them from its ``ovn_nb_*`` options); it needs all three and cannot skip verification."""
    if not (files.ca_file and files.cert_file and files.key_file):
        raise ConfigurationError("ssl: OVN NB remotes need [converge] cafile, certfile and keyfile")
    if files.insecure:
        raise ConfigurationError("[converge] insecure does not apply to ssl: OVN NB remotes: python-ovs always "
                                 "verifies NB's certificate against cafile")
    from ovs.stream import Stream

    Stream.ssl_set_private_key_file(files.key_file)
    Stream.ssl_set_certificate_file(files.cert_file)
    Stream.ssl_set_ca_cert_file(files.ca_file)
