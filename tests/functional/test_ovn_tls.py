"""OVN's ``ssl:`` NB remotes with ``[converge] cafile, certfile, keyfile``: an NB ``ovsdb-server`` serving
``pssl:`` with a certificate of a CA made for the test (it requires the client's certificate, signed by
the same CA), and the OVN backend built by ``make_backend`` writing to it through python-ovs's SSL stream."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from ovn_support import eventually, network

from converge.backends.base import Put
from converge.backends.select import BackendKind, BackendSettings, make_backend
from converge.core.errors import ConfigurationError
from converge.core.ids import RootId
from converge.core.tls import TlsFiles
from converge.testing.mariadb import free_port
from converge.testing.ovn import OVN_SCHEMAS, ovs_daemon, ovs_environment, wait_listening
from converge.testing.processes import Daemon, program, run
from converge.testing.tls import Pki, make_pki

pytestmark = pytest.mark.ovn


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def ssl_nb(tmp_path: Path, pki: Pki) -> Iterator[str]:
    """An NB ovsdb-server on ``pssl:`` (and a unix socket for readiness); its ``ssl:`` remote."""
    env = ovs_environment(tmp_path)
    db, sock, port = tmp_path / "nb.db", tmp_path / "nb.sock", free_port()
    run([program("ovsdb-tool"), "create", str(db), str(OVN_SCHEMAS / "ovn-nb.ovsschema")], env=env)
    server: Daemon = ovs_daemon("ovsdb-server-nb", [
        program("ovsdb-server"), str(db), f"--remote=punix:{sock}", f"--remote=pssl:{port}:127.0.0.1",
        f"--private-key={pki.server_key}", f"--certificate={pki.server_cert}", f"--ca-cert={pki.ca}",
        f"--unixctl={tmp_path / 'nb'}.ctl"], workdir=tmp_path, env=env)
    try:
        wait_listening(server, sock)
        yield f"ssl:127.0.0.1:{port}"
    finally:
        server.stop()


def test_the_ovn_backend_writes_to_an_ssl_remote_with_the_configured_files(ssl_nb, pki):
    backend = make_backend(BackendSettings(kind=BackendKind.OVN, ovn_connections=(ssl_nb,), timeout=5.0,
                                           tls=TlsFiles(str(pki.ca), str(pki.client_cert), str(pki.client_key))))
    try:
        eventually(backend.connected, "the backend's replica of NB over SSL")
        root = RootId("ssl-root")
        etag = backend.apply(root, if_match=backend.root_etag(root),
                             operations=[Put(network(str(uuid.uuid4())))], epoch=1)
        assert etag != 0 and backend.root_etag(root) == etag
    finally:
        backend.close()


def test_an_ssl_remote_needs_all_three_files_and_no_insecure(pki):
    with pytest.raises(ConfigurationError, match="ssl: OVN NB remotes need"):
        make_backend(BackendSettings(kind=BackendKind.OVN, ovn_connections=("ssl:127.0.0.1:1",),
                                     tls=TlsFiles(ca_file=str(pki.ca))))
    with pytest.raises(ConfigurationError, match="insecure does not apply"):
        make_backend(BackendSettings(kind=BackendKind.OVN, ovn_connections=("ssl:127.0.0.1:1",),
                                     tls=TlsFiles(str(pki.ca), str(pki.client_cert), str(pki.client_key),
                                                  insecure=True)))
