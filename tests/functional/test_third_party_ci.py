"""A representative part of third-party CI (``scripts/third-party-ci``, docs/third-party-ci.md) in the suite:
Keystone, Neutron with Converge and ``auth_strategy = keystone``, and Tempest's own runner on a handful of
network API tests — the create-versus-show port tests among them, which failed while a member saw
``converge:sync_state`` move from pending to synced with no revision bump.

Keystone and Tempest come from ``.venv-tempest``; ``scripts/setup-tempest`` makes it when it is missing or
older than ``requirements-tempest.lock`` (about 90 s the first time on a fresh machine, then nothing).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from neutron_support import MARKS

from converge.testing import third_party_ci
from converge.testing.mariadb import MariaDB

pytestmark = [*MARKS, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
# One test per line, as regexes over Tempest's test ids ("[" ends the name: test_show_port, not _fields).
SUBSET = [
    r"tempest\.api\.network\.test_ports\.PortsTestJSON\.test_show_port\[",
    r"tempest\.api\.network\.test_ports\.PortsIpV6TestJSON\.test_show_port\[",
    r"tempest\.api\.network\.test_ports\.PortsTestJSON\.test_create_update_delete_port\[",
    r"tempest\.api\.network\.test_networks\.NetworksTest\.test_show_network\[",
    r"tempest\.api\.network\.test_networks\.NetworksTest\.test_show_subnet\[",
    r"tempest\.api\.network\.test_routers\.RoutersTest\.test_create_show_list_update_delete_router\[",
    r"tempest\.api\.network\.test_floating_ips\.FloatingIPTestJSON\.test_create_list_show_update_delete_floating_ip\[",
    r"tempest\.api\.network\.test_security_groups\.SecGroupTest\.test_create_show_delete_security_group_rule\[",
]


@pytest.fixture(scope="module")
def venv() -> Path:
    subprocess.run([str(ROOT / "scripts" / "setup-tempest")], check=True, timeout=900)
    return ROOT / ".venv-tempest"


def test_tempest_subset_passes_against_converge(tmp_path: Path, mariadb: MariaDB, venv: Path) -> None:
    include = tmp_path / "include-list"
    include.write_text("\n".join(SUBSET) + "\n")
    with third_party_ci.Environment(tmp_path / "ci", venv=venv, mariadb=mariadb) as env:
        run = third_party_ci.run_driver(env, third_party_ci.CONVERGE, regex="", concurrency=2, include_list=include)
    results = run.results
    assert "converge-sync" in run.extensions, run.extensions  # Converge's API extension was loaded
    log = (tmp_path / "ci" / "converge" / "tempest" / "tempest-run.log").read_text(errors="replace")
    assert results.failed == (), f"{results.summary()}\n{log[-6000:]}"
    assert len(results.passed) == len(SUBSET) and not results.skipped, f"{results.summary()}: {results.passed}"
    assert {name.rsplit(".", 2)[-2] for name in results.passed if name.endswith(".test_show_port")} == {
        "PortsTestJSON", "PortsIpV6TestJSON"}
