"""Tempest, OpenStack's integration test suite, run against a Neutron API behind a Keystone: its configuration,
its runner, and what it says.

Why: vendors of a Neutron backend run Tempest's network API tests (``tempest.api.network``) in third-party
CI; Converge has to pass them as the upstream drivers do. :func:`write_config` writes a ``tempest.conf``
for a Keystone-enabled Neutron with no compute, image, volume or object service (dynamic credentials: Tempest
makes a project and users per test class with Keystone's ``member``, ``reader`` and ``admin`` roles; no
isolated networks; the external network for routers and floating IPs; the API extensions Neutron lists).
:func:`run` runs ``tempest run`` (stestr) from Tempest's own virtualenv in a workspace folder and reads the
results back from stestr's repository as a :class:`Results`. Called by ``converge.testing.third_party_ci``
(``scripts/third-party-ci``) and its functional test.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from converge.testing.keystone import DOMAIN, REGION, Keystone
from converge.testing.neutron import render_ini

NETWORK_API = r"^tempest\.api\.network\."
_ATTRIBUTES = re.compile(r"\[[^\]]*\]$")  # a test id's "[id-…,smoke]" suffix


@dataclass(frozen=True)
class Results:
    """Test ids (without their ``[id-…]`` attributes) by outcome, and the run's wall-clock time. A class
    whose set-up failed is one failure named ``setUpClass (its.Class)``, as stestr reports it."""

    passed: tuple[str, ...]
    failed: tuple[str, ...]
    skipped: tuple[str, ...]
    seconds: float
    exit_code: int

    def summary(self) -> str:
        return f"{len(self.passed)} passed, {len(self.failed)} failed, {len(self.skipped)} skipped"


@dataclass(frozen=True)
class Cloud:
    """What Tempest is told about the cloud under test."""

    public_network_id: str
    public_network_name: str
    extensions: Sequence[str]


def write_config(path: Path, *, keystone: Keystone, cloud: Cloud, log_dir: Path) -> None:
    """``tempest.conf`` for ``keystone``'s catalog, whose ``network`` endpoint is the Neutron under test."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_ini({
        "DEFAULT": {"log_dir": log_dir, "log_file": "tempest.log", "debug": True},
        "auth": {
            "use_dynamic_credentials": True, "admin_username": "admin", "admin_password": keystone.admin_password,
            "admin_project_name": "admin", "admin_domain_name": DOMAIN, "default_credentials_domain_name": DOMAIN,
            # A network, subnet and router per test project are for servers; the network tests make their own.
            "create_isolated_networks": False,
        },
        "identity": {"uri_v3": keystone.auth_url, "auth_version": "v3", "region": REGION,
                     "v3_endpoint_type": "public"},
        "identity-feature-enabled": {"api_v2": False, "api_v3": True},
        "network": {"region": REGION, "endpoint_type": "publicURL", "public_network_id": cloud.public_network_id,
                    "floating_network_name": cloud.public_network_name, "project_networks_reachable": False,
                    "shared_physical_network": False},
        "network-feature-enabled": {
            "api_extensions": sorted(cloud.extensions), "ipv6": True, "ipv6_subnet_attributes": True,
            "port_security": "port-security" in cloud.extensions, "floating_ips": True,
            "port_admin_state_change": True},
        # Neutron 29 enforces its new defaults and scopes (oslo.policy's defaults): Tempest then reads as a
        # project reader where a test says so.
        "enforce_scope": {"neutron": True},
        "service_available": {"neutron": True, "nova": False, "glance": False, "cinder": False, "swift": False,
                              "horizon": False},
        "validation": {"run_validation": False},
    }))


def run(workspace: Path, *, venv: Path, config: Path, regex: str = NETWORK_API, concurrency: int = 2,
        include_list: Path | None = None, timeout: float = 3600.0) -> Results:
    """``tempest run`` in ``workspace`` (its ``.stestr.conf`` and results repository; Tempest's output in
    ``tempest-run.log``), then the outcome of every test."""
    workspace.mkdir(parents=True, exist_ok=True)
    tempest = str(Path(venv).resolve() / "bin" / "tempest")
    argv = [tempest, "run", "--config-file", str(config), "--concurrency", str(concurrency)]
    argv += ["--include-list", str(include_list)] if include_list else ["--regex", regex]
    began = time.monotonic()
    with open(workspace / "tempest-run.log", "ab") as log:
        done = subprocess.run(argv, cwd=workspace, stdin=subprocess.DEVNULL, stdout=log,
                              stderr=subprocess.STDOUT, timeout=timeout)
    seconds = time.monotonic() - began
    return _read(workspace, venv=venv, seconds=seconds, exit_code=done.returncode)


def _read(workspace: Path, *, venv: Path, seconds: float, exit_code: int) -> Results:
    """The last run's outcomes from stestr's repository, through ``subunit2csv``."""
    bin_dir = Path(venv).resolve() / "bin"
    stream = subprocess.run([str(bin_dir / "stestr"), "last", "--subunit"], cwd=workspace, capture_output=True,
                            check=False, timeout=300).stdout
    # subunit2csv exits 1 when the stream holds a failure, as subunit's filters do: its table is still whole.
    table = subprocess.run([str(bin_dir / "subunit2csv"), "--no-passthrough"], input=stream, capture_output=True,
                           check=False, timeout=300).stdout.decode()
    return parse_csv(table, seconds=seconds, exit_code=exit_code)


def parse_csv(table: str, *, seconds: float, exit_code: int) -> Results:
    """``subunit2csv``'s table (``test,status,start_time,stop_time``) as :class:`Results`."""
    outcomes: dict[str, list[str]] = {"passed": [], "failed": [], "skipped": []}
    # unittest's outcome names; any other (failure, error, unexpectedsuccess) is a failure.
    kinds = {"success": "passed", "expectedfailure": "passed", "xfail": "passed", "skip": "skipped"}
    for row in csv.DictReader(io.StringIO(table)):
        outcomes[kinds.get(row["status"], "failed")].append(_ATTRIBUTES.sub("", row["test"]))
    return Results(passed=tuple(sorted(outcomes["passed"])), failed=tuple(sorted(outcomes["failed"])),
                   skipped=tuple(sorted(outcomes["skipped"])), seconds=seconds, exit_code=exit_code)

