"""Security settings read from configuration: the TLS files of ``[converge]`` (oslo.config for the Neutron
processes, plain INI values for the CLI) and the warning about a token file others may read."""

import logging

import pytest
from oslo_config import cfg

from converge.core.errors import ConfigurationError
from converge.core.tls import TlsFiles, client_context, from_config
from converge.neutron import config


def neutron_conf(tmp_path, **options):
    conf = cfg.ConfigOpts()
    config.register(conf)
    path = tmp_path / "neutron.conf"
    path.write_text("[converge]\n" + "".join(f"{k} = {v}\n" for k, v in options.items()))
    conf(["--config-file", str(path)], project="converge-test")
    return conf


def test_tls_options_reach_the_backend_settings_with_verification_on_by_default(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(0o600)
    plain = config.backend_settings(neutron_conf(tmp_path, token_file=token), writer="w")
    assert plain.tls == TlsFiles() and not plain.tls.insecure
    conf = neutron_conf(tmp_path, token_file=token, cafile="/etc/ca.pem", certfile="/etc/c.pem",
                        keyfile="/etc/k.pem", insecure="true")
    assert config.backend_settings(conf, writer="w").tls == TlsFiles("/etc/ca.pem", "/etc/c.pem", "/etc/k.pem",
                                                                     insecure=True)


def test_the_cli_reads_the_same_options_from_plain_ini_values():
    assert from_config({}) == TlsFiles()
    assert from_config({"cafile": "/ca", "insecure": "True"}) == TlsFiles(ca_file="/ca", insecure=True)
    with pytest.raises(ConfigurationError, match="insecure 'maybe' is not a boolean"):
        from_config({"insecure": "maybe"})


def test_a_token_file_others_may_read_is_warned_about_without_its_content(tmp_path, caplog):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(0o640)
    with caplog.at_level(logging.WARNING, logger="converge.neutron.config"):
        assert config.token(neutron_conf(tmp_path, token_file=token)) == "s3cret"
    assert caplog.records == []
    token.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="converge.neutron.config"):
        config.token(neutron_conf(tmp_path, token_file=token))
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "readable by other users (mode 644)" in caplog.text and "s3cret" not in caplog.text


def test_a_key_without_its_certificate_or_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigurationError, match="key file is set without its certificate"):
        client_context(TlsFiles(key_file=str(tmp_path / "k.pem")))
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate, and certainly no secret to print\n")
    with pytest.raises(ConfigurationError, match=r"TLS CA file .*bad\.pem cannot be loaded") as raised:
        client_context(TlsFiles(ca_file=str(bad)))
    assert "secret" not in str(raised.value)
