"""TLS to the controller, over real sockets: the reference controller serves HTTPS with a certificate of a
CA made for the test and requires client certificates; ``converge`` reads the CA, its client certificate
and key from ``[converge]`` of a neutron.conf, and syncs through it. A wrong CA and a missing client
certificate each fail with one sentence naming the problem — no traceback, no token."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from engine_support import assert_converged, change, cli_env, new_store, record, run_cli

from converge.backends.fabric import FabricClient
from converge.core.errors import ConfigurationError, ControllerUnavailable
from converge.core.ids import RootId
from converge.core.tls import TlsFiles
from converge.testing.fabric import FabricProcess, FabricTls
from converge.testing.tls import Pki, make_pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def stranger(tmp_path: Path) -> Pki:
    """Another CA, trusted by nobody here."""
    return make_pki(tmp_path / "stranger", name="stranger")


@pytest.fixture
def tls_fabric(fabric_factory, pki: Pki) -> FabricProcess:
    tls = FabricTls(cert=pki.server_cert, key=pki.server_key, ca=pki.ca, client_ca=pki.ca,
                    client_cert=pki.client_cert, client_key=pki.client_key)
    process: FabricProcess = fabric_factory(tls=tls)
    return process


def neutron_conf(path: Path, fabric: FabricProcess, store: str, **tls: object) -> Path:
    lines = ["[database]", f"connection = {store}", "[converge]", f"controller_urls = {fabric.url}",
             f"token_file = {fabric.token_file}", *(f"{key} = {value}" for key, value in tls.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def converge(*args: str, fabric: FabricProcess) -> tuple[int, str]:
    result = run_cli(*args, env=cli_env())
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert fabric.token not in output and fabric.admin_token not in output, "a token was printed"
    return result.returncode, output


def test_sync_through_https_with_a_ca_file_and_a_client_certificate(tmp_path, tls_fabric, pki):
    assert tls_fabric.url.startswith("https://")
    store = f"sqlite:///{tmp_path / 'store.sqlite'}"
    engine = new_store(store)
    record(engine, [change("tls-root", "network", "n1", name="over-tls"),
                    change("tls-root", "network", "n2", name="also")])
    conf = neutron_conf(tmp_path / "neutron.conf", tls_fabric, store, cafile=pki.ca, certfile=pki.client_cert,
                        keyfile=pki.client_key)
    code, output = converge("sync", "run", "--until-idle", "--timeout", "60", "--config-file", str(conf),
                            fabric=tls_fabric)
    assert code == 0, output
    assert_converged(engine, tls_fabric)
    engine.dispose()


def status_error(tmp_path: Path, fabric: FabricProcess, **tls: object) -> str:
    store = f"sqlite:///{tmp_path / 'status.sqlite'}"
    conf = neutron_conf(tmp_path / "bad.conf", fabric, store, **tls)
    code, output = converge("status", "--json", "--config-file", str(conf), fabric=fabric)
    assert code in (0, 1, 2), output
    error: str = json.loads(output)["controller_error"] if output.lstrip().startswith("{") else output
    return error


def test_a_wrong_ca_says_the_controllers_certificate_was_not_accepted(tmp_path, tls_fabric, pki, stranger):
    error = status_error(tmp_path, tls_fabric, cafile=stranger.ca, certfile=pki.client_cert,
                         keyfile=pki.client_key)
    assert "TLS: the controller's certificate was not accepted" in error and "cafile" in error, error


def test_a_missing_client_certificate_says_one_is_required(tmp_path, tls_fabric, pki):
    error = status_error(tmp_path, tls_fabric, cafile=pki.ca)
    assert "TLS: the controller requires a client certificate" in error and "certfile" in error, error


def test_the_client_names_each_tls_problem_in_one_sentence(tls_fabric, pki, stranger):
    def reach(files: TlsFiles) -> None:
        client = FabricClient([tls_fabric.url], tls_fabric.token, tls=files)
        try:
            client.root_etag(RootId("r"))
        finally:
            client.close()

    reach(TlsFiles(str(pki.ca), str(pki.client_cert), str(pki.client_key)))
    with pytest.raises(ControllerUnavailable, match="certificate was not accepted"):
        reach(TlsFiles(str(stranger.ca), str(pki.client_cert), str(pki.client_key)))
    with pytest.raises(ConfigurationError, match="requires a client certificate"):
        reach(TlsFiles(str(pki.ca)))
    with pytest.raises(ControllerUnavailable, match="does not trust our client certificate"):
        reach(TlsFiles(str(pki.ca), str(stranger.client_cert), str(stranger.client_key)))
    with pytest.raises(ConfigurationError, match=r"TLS CA file .*missing\.pem: no such file \(cafile\)"):
        reach(TlsFiles(str(pki.ca.with_name("missing.pem"))))


def test_verification_is_off_only_when_asked_and_then_says_so(tls_fabric, pki, caplog):
    with caplog.at_level(logging.WARNING, logger="converge.backends.fabric.client"):
        client = FabricClient([tls_fabric.url], tls_fabric.token,
                              tls=TlsFiles(cert_file=str(pki.client_cert), key_file=str(pki.client_key),
                                           insecure=True))
    try:
        assert client.root_etag(RootId("r")) == 0
    finally:
        client.close()
    assert any("verification of the controller's certificate is off" in r.message for r in caplog.records)
    default = FabricClient([tls_fabric.url], tls_fabric.token,
                           tls=TlsFiles(cert_file=str(pki.client_cert), key_file=str(pki.client_key)))
    try:  # no CA file: the system's trust store, which does not know the test's CA
        with pytest.raises(ControllerUnavailable, match="certificate was not accepted"):
            default.root_etag(RootId("r"))
    finally:
        default.close()


def test_the_controller_refuses_to_start_with_half_a_tls_configuration(tmp_path, pki):
    process = FabricProcess(tmp_path / "half", extra_args=["--tls-cert", str(pki.server_cert)])
    with pytest.raises(RuntimeError, match="--tls-cert and --tls-key go together"):
        process.start()
    process.stop()
