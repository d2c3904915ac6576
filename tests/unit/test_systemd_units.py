"""The systemd units in ``etc/systemd/`` and the unit examples in the docs start programs that exist with flags
those programs accept.

A unit file is read as systemd reads it, near enough (``configparser`` with ``strict=False``: a key such as
``SystemCallFilter`` may repeat). Each ``ExecStart`` must name a console script of this package, and its flags must
parse: ``converge fabric serve`` through its own argparse parser (``converge.fabric.serve.build_parser``),
``converge-agent`` through its own ``configure()`` in a child process (oslo.config's global options, oslo.log), with
the files it names replaced by files of the test's folder. A flag either program does not know fails the test.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from converge.fabric import serve

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted((ROOT / "etc" / "systemd").glob("*.service"))
DOCS = [*sorted((ROOT / "docs" / "guide").glob("*.md")), ROOT / "docs" / "operations.md"]
SCRIPTS = {ep.name for ep in importlib.metadata.distribution("networking-converge").entry_points
           if ep.group == "console_scripts"}
FILE_FLAGS = {"--config-file", "--config-dir", "--log-file", "--log-dir"}  # converge-agent's paths on the host


def read_unit(text: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd's keys are case-sensitive
    unit.read_string(text)
    return unit


def doc_units() -> list[tuple[str, str]]:
    """Every ```ini block of the docs whose ExecStart runs one of Converge's programs (``converge``,
    ``converge-agent``), its backslash-continued lines joined; units of Neutron's own programs are left alone."""
    found = []
    for doc in DOCS:
        if not doc.exists():
            continue
        for i, block in enumerate(re.findall(r"```ini\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)):
            if re.search(r"^ExecStart=\S*/converge[ -]", block, re.M):
                found.append((f"{doc.relative_to(ROOT)}#{i}", block.replace("\\\n", " ")))
    return found


ALL = [(u.name, u.read_text(encoding="utf-8")) for u in UNITS] + doc_units()


def command(unit: configparser.ConfigParser) -> list[str]:
    argv = shlex.split(unit["Service"]["ExecStart"])
    return [argv[0].lstrip("-@:+!"), *argv[1:]]  # systemd's prefixes before the path


def agent_parses(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``converge-agent``'s own option parsing on ``argv``, its files moved into ``tmp_path``."""
    moved, files = [], iter(range(1000))
    args = iter(argv)
    for arg in args:
        flag, eq, value = arg.partition("=")
        if flag in FILE_FLAGS:
            value = value if eq else next(args)
            local = tmp_path / f"{next(files)}-{Path(value).name}"
            if flag == "--config-file":
                local.write_text("[DEFAULT]\n")
            elif flag in ("--config-dir", "--log-dir"):
                local.mkdir()
            moved += [flag, str(local)]
        else:
            moved.append(arg)
    check = "import sys; from converge.neutron.agent import configure; configure(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", check, *moved], capture_output=True, text=True, timeout=120)


def test_the_units_are_shipped():
    assert {u.name for u in UNITS} >= {"converge-agent.service", "converge-fabric.service"}


@pytest.mark.parametrize(("name", "text"), ALL, ids=[name for name, _ in ALL])
def test_exec_start_names_a_program_of_this_package(name: str, text: str):
    unit = read_unit(text)
    program = Path(command(unit)[0])
    assert program.is_absolute(), f"{name}: systemd wants an absolute path in ExecStart"
    assert program.name in SCRIPTS, f"{name}: {program.name} is none of this package's scripts {sorted(SCRIPTS)}"


@pytest.mark.parametrize(("name", "text"), [(n, t) for n, t in ALL if "fabric serve" in t],
                         ids=[n for n, t in ALL if "fabric serve" in t])
def test_fabric_flags_parse_and_listen_where_allowed(name: str, text: str):
    unit = read_unit(text)
    argv = command(unit)
    assert argv[1:3] == ["fabric", "serve"], name
    args = serve.build_parser("converge fabric serve").parse_args(argv[3:])  # an unknown flag: SystemExit
    host, _ = serve.parse_listen(args.listen)
    assert serve.is_loopback(host) or args.allow_non_loopback, f"{name}: the controller would refuse {host}"
    assert args.token_file, f"{name}: the token belongs in a file, never on the command line"
    assert not args.faults, f"{name}: a service never enables fault injection"
    state = unit["Service"].get("StateDirectory")
    if state:  # the database lives in the folder systemd makes for the service's user
        assert Path(args.db).parent == Path("/var/lib") / state, name


def test_fabric_unit_is_a_hardened_service_of_its_own_user():
    service = read_unit((ROOT / "etc/systemd/converge-fabric.service").read_text())["Service"]
    assert service["User"] not in ("root", "neutron")
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices"):
        assert service[key] == "true", key
    assert service["ProtectSystem"] == "strict"
    assert service["CapabilityBoundingSet"] == ""


@pytest.mark.parametrize(("name", "text"), [(n, t) for n, t in ALL if "converge-agent " in t],
                         ids=[n for n, t in ALL if "converge-agent " in t])
def test_agent_unit_stops_gracefully_and_its_flags_parse(name: str, text: str, tmp_path: Path):
    unit = read_unit(text)
    service = unit["Service"]
    assert service["KillMode"] == "mixed", f"{name}: SIGTERM to the launcher only, so the worker releases its leases"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID", name
    assert service["User"] == "neutron", name
    argv = command(unit)
    assert argv.count("--config-file") >= 2, f"{name}: neutron.conf and ML2's file (the agent refuses to start "
    "without [ml2] mechanism_drivers = converge)"
    done = agent_parses(argv[1:], tmp_path)
    assert done.returncode == 0, f"{name}: converge-agent refused its ExecStart flags:\n{done.stderr[-2000:]}"


def test_the_agent_check_refuses_an_unknown_flag(tmp_path: Path):
    done = agent_parses(["--config-file", "/etc/neutron/neutron.conf", "--no-such-flag"], tmp_path)
    assert done.returncode != 0 and "no-such-flag" in done.stderr


def test_agent_unit_starts_after_the_network_and_the_database():
    unit = read_unit((ROOT / "etc/systemd/converge-agent.service").read_text())["Unit"]
    after = unit["After"].split()
    assert "network-online.target" in after and "network-online.target" in unit["Wants"].split()
    assert {"mariadb.service", "mysql.service"} & set(after)
