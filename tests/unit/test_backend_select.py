"""The backend selector (``converge.backends.select``) and the two ways its settings are filled: Neutron's
``[converge]`` options and the CLI's flags, environment and ``--config-file``. No controller is reached: a
fabric client connects lazily, and an OVN remote that is not one is refused before any connection."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from oslo_config import cfg

from converge.backends.fabric import FabricClient
from converge.backends.select import BackendKind, BackendSettings, backend_kind, make_backend
from converge.cli.context import add_common, settings
from converge.core.errors import ConfigurationError
from converge.neutron import config


def test_the_fabric_is_the_default_and_needs_urls_and_a_token():
    backend = make_backend(BackendSettings(controller_urls=("http://192.0.2.1:8780",), token="t", writer="w"))
    assert isinstance(backend, FabricClient) and backend.urls == ["http://192.0.2.1:8780"]
    backend.close()
    with pytest.raises(ConfigurationError, match="token"):
        make_backend(BackendSettings(controller_urls=("http://192.0.2.1:8780",)))
    with pytest.raises(ConfigurationError, match="controller URLs"):
        make_backend(BackendSettings(token="t"))


def test_the_ovn_branch_builds_the_ovn_backend_which_checks_its_remotes():
    with pytest.raises(ConfigurationError, match="must look like tcp:"):
        make_backend(BackendSettings(kind=BackendKind.OVN, ovn_connections=("192.0.2.1:6641",)))


def test_a_backend_kind_is_one_of_the_choices():
    assert backend_kind(" OVN ") is BackendKind.OVN
    with pytest.raises(ConfigurationError, match="expected one of fabric, ovn"):
        backend_kind("nsx")


def neutron_conf(tmp_path: Path, text: str) -> cfg.ConfigOpts:
    path = tmp_path / "neutron.conf"
    path.write_text(text)
    conf = cfg.ConfigOpts()
    config.register(conf)
    conf(["--config-file", str(path)])
    return conf


def test_neutron_options_fill_the_settings_and_ovn_needs_no_token(tmp_path):
    conf = neutron_conf(tmp_path, "[converge]\nbackend = ovn\novn_nb_connection = tcp:10.0.0.1:6641,tcp:10.0.0.2:6641\n"
                                  "ovn_timeout = 3\novn_gateway_chassis = gw-1,gw-2\n")
    found = config.backend_settings(conf, writer="worker-1")
    assert found == BackendSettings(kind=BackendKind.OVN, controller_urls=("http://127.0.0.1:8780",), token=None,
                                    ovn_connections=("tcp:10.0.0.1:6641", "tcp:10.0.0.2:6641"), timeout=3.0,
                                    gateway_chassis=("gw-1", "gw-2"), writer="worker-1")
    conf = neutron_conf(tmp_path, "[converge]\ntoken = secret\nrequest_timeout = 4\n")
    fabric = config.backend_settings(conf, writer="w")
    assert (fabric.kind, fabric.token, fabric.timeout) == (BackendKind.FABRIC, "secret", 4.0)
    assert conf.converge.bind_network_types == ["geneve", "vxlan", "vlan", "flat"]


def test_neutron_refuses_an_unknown_backend(tmp_path):
    with pytest.raises(ValueError):
        neutron_conf(tmp_path, "[converge]\nbackend = nsx\n").converge.backend  # noqa: B018


def cli_settings(monkeypatch, *argv: str, **env: str):
    for name in ("CONVERGE_BACKEND", "CONVERGE_OVN_NB", "CONVERGE_CONTROLLERS", "CONVERGE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    parser = argparse.ArgumentParser()
    add_common(parser)
    return settings(parser.parse_args(list(argv)))


def test_the_cli_takes_the_backend_from_flags_then_environment_then_config_files(monkeypatch, tmp_path):
    ini = tmp_path / "neutron.conf"
    ini.write_text("[converge]\nbackend = ovn\novn_nb_connection = tcp:10.0.0.9:6641\novn_gateway_chassis = gw\n")
    from_file = cli_settings(monkeypatch, "--config-file", str(ini))
    assert from_file.backend_kind is BackendKind.OVN and from_file.ovn_nb == ("tcp:10.0.0.9:6641",)
    assert from_file.gateway_chassis == ("gw",) and from_file.has_backend
    assert from_file.describe()["ovn_nb"] == ["tcp:10.0.0.9:6641"] and "token" not in from_file.describe()

    from_env = cli_settings(monkeypatch, "--config-file", str(ini), CONVERGE_OVN_NB="tcp:a:1, tcp:b:2")
    assert from_env.ovn_nb == ("tcp:a:1", "tcp:b:2")
    from_flag = cli_settings(monkeypatch, "--config-file", str(ini), "--ovn-nb", "unix:/run/nb.sock",
                             CONVERGE_OVN_NB="tcp:a:1")
    assert from_flag.ovn_nb == ("unix:/run/nb.sock",)
    fabric = cli_settings(monkeypatch, "--config-file", str(ini), "--backend", "fabric", CONVERGE_BACKEND="ovn")
    assert fabric.backend_kind is BackendKind.FABRIC and not fabric.has_backend  # no URL given
    with pytest.raises(ConfigurationError, match="no controller URL"):
        fabric.backend()

    default = cli_settings(monkeypatch, CONVERGE_BACKEND="ovn")
    assert default.ovn_nb == ("tcp:127.0.0.1:6641",)
    with pytest.raises(ConfigurationError, match="unknown backend"):
        cli_settings(monkeypatch, CONVERGE_BACKEND="nsx")


def test_the_cli_needs_a_token_only_for_the_fabric(monkeypatch):
    fabric = cli_settings(monkeypatch, "--controller", "http://192.0.2.1:8780")
    with pytest.raises(ConfigurationError, match="no controller token"):
        fabric.backend()
    ovn = cli_settings(monkeypatch, "--backend", "ovn", "--ovn-nb", "192.0.2.1:6641")
    with pytest.raises(ConfigurationError, match="must look like tcp:"):  # reached the OVN backend, no token asked
        ovn.backend()
