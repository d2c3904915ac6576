"""One list of ``[converge]`` options, two readers: ``converge-agent`` and Neutron's processes read them with
oslo.config (``converge.neutron.config.OPTS``), the CLI reads Neutron's files itself (``converge.core.inifile``,
without oslo). These tests hold the two together: every option is named once on the CLI's side, and the
same file gives the same worker settings to ``converge-agent`` and to ``converge sync run``."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

from oslo_config import cfg

from converge.cli import sync_cmds
from converge.core import inifile
from converge.engine.worker import WorkerConfig
from converge.neutron import config, worker
from converge.testing.mariadb import free_port


def test_every_option_is_read_by_the_cli_or_named_as_neutron_only():
    named = [*inifile.KEYS, *inifile.NEUTRON_ONLY]
    assert len(named) == len(set(named)), "an option named twice in converge.core.inifile"
    options = {opt.name for opt in config.OPTS}
    assert options - set(named) == set(), (
        "options of converge.neutron.config the CLI does not know of: read them in the CLI (converge.core.inifile "
        "and cli/context.py) or name them in inifile.NEUTRON_ONLY if only Neutron's processes use them")
    assert set(named) - options == set(), "converge.core.inifile names options that do not exist"


def test_worker_options_are_worker_config_fields_with_its_defaults():
    defaults = WorkerConfig()
    opts = {opt.name: opt for opt in config.OPTS}
    for key in inifile.WORKER_KEYS:
        assert opts[key].default == getattr(defaults, key), key
    assert opts[inifile.LEASE_KEY].default == defaults.lease.duration


def conf_file(tmp_path: Path, **converge: object) -> Path:
    path = tmp_path / "neutron.conf"
    lines = ["[database]", "connection = sqlite://", "[converge]", *(f"{k} = {v}" for k, v in converge.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def from_oslo(path: Path) -> WorkerConfig:
    conf = cfg.ConfigOpts()
    conf.register_opt(cfg.StrOpt("connection"), group="database")
    config.register(conf)
    conf(["--config-file", str(path)])
    return worker.worker_config(conf)


def from_cli(path: Path | None, *flags: str) -> WorkerConfig:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    sync_cmds.add_parsers(sub)
    args = parser.parse_args(["sync", "run", *flags])
    args.config_file = [str(path)] if path else None
    return sync_cmds.worker_config(args)


FILE = {"lease_duration": 9, "poll_interval": 0.2, "sweep_interval": 7, "batch_size": 50, "journal_limit": 600,
        "blocked_retry": 3, "backoff_base": 0.25, "backoff_cap": 8, "concurrency": 2, "membership_interval": 1.5}


def test_the_agent_and_sync_run_take_the_same_worker_settings_from_one_file(tmp_path):
    path = conf_file(tmp_path, **FILE)
    agent = from_oslo(path)
    assert agent == from_cli(path)
    assert {f.name: getattr(agent, f.name) for f in dataclasses.fields(agent) if f.name in FILE} == {
        k: v for k, v in FILE.items() if k != "lease_duration"}
    assert (agent.lease.duration, agent.lease.renew_every, agent.lease.renew_deadline) == (9, 3, 6)


def test_sync_run_flags_override_the_file_and_defaults_fill_the_rest(tmp_path):
    path = conf_file(tmp_path, batch_size=50)
    settings = from_cli(path, "--batch-size", "70", "--lease-duration", "30")
    assert (settings.batch_size, settings.lease.duration) == (70, 30)
    assert from_cli(path).batch_size == 50
    assert from_cli(None) == WorkerConfig()


def test_sync_run_with_neutron_files_warns_that_it_turns_no_port_active(tmp_path):
    """``converge sync run --config-file neutron.conf`` drains (no controller is needed for an empty journal),
    but says at start that ports need converge-agent or the periodic workers; a bad value is exit 2."""
    path = conf_file(tmp_path, controller_urls=f"http://127.0.0.1:{free_port()}", token="x", lease_duration=4)
    path.write_text(path.read_text().replace("sqlite://", f"sqlite:///{tmp_path / 'store.sqlite'}"))
    run = subprocess.run([sys.executable, "-m", "converge.cli.main", "sync", "run", "--until-idle", "--timeout", "30",
                          "--config-file", str(path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "converge sync run turns no Neutron port ACTIVE" in run.stderr and "converge-agent" in run.stderr
    path.write_text(path.read_text() + "batch_size = many\n")
    refused = subprocess.run([sys.executable, "-m", "converge.cli.main", "sync", "run", "--until-idle",
                              "--config-file", str(path)], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "[converge] batch_size 'many' is not an integer" in refused.stderr
