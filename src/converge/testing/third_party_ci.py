"""Third-party CI as vendors run it: Tempest's network API tests against Neutron with Converge, then with a
no-op driver, on one machine (``scripts/third-party-ci`` calls :func:`main`; docs/third-party-ci.md).

Why both: a Tempest failure may be the environment's (no compute service, no agents, this machine) or the
driver's. The same tests against the same Neutron with the ``converge_noop`` mechanism driver (no extension
driver, Neutron's own ``router`` plugin) tell them apart: the run fails only when Converge's run has a
failure the no-op run does not have.

What runs, all on 127.0.0.1 under ``--workdir`` and stopped by PID at the end, also after a failure or a
SIGTERM: one throwaway MariaDB holding Keystone's database and each Neutron's; Keystone under uWSGI
(``converge.testing.keystone``: fernet tokens, ``keystone-manage bootstrap``'s admin and roles, a
``neutron`` service user, the catalog's ``network`` endpoint set to the Neutron under test); the fabric
controller; per driver, Neutron's API under uWSGI with ``auth_strategy = keystone`` and
``neutron-periodic-workers`` (``converge.testing.neutron``), an external network ``public`` (flat, IPv4 and
IPv6 subnets) as devstack makes it, then ``tempest run`` (``converge.testing.tempest``) with the API
extensions that Neutron lists. Prints each run's counts and failures and writes ``results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from converge.testing import tempest
from converge.testing.fabric import FabricProcess, FabricStartError
from converge.testing.keystone import DOMAIN, Keystone, KeystoneStartError
from converge.testing.mariadb import MariaDB
from converge.testing.neutron import NeutronStack, NeutronStartError
from converge.testing.processes import interrupts

DRIVERS = ("converge", "noop")
PUBLIC = "public"


@dataclass(frozen=True)
class Driver:
    """How one run loads Neutron."""

    name: str
    mechanism_drivers: tuple[str, ...]
    extension_drivers: str
    service_plugins: tuple[str, ...]
    needs_controller: bool


CONVERGE = Driver("converge", ("converge",), "port_security,converge", ("converge_router",), True)
NOOP = Driver("noop", ("converge_noop",), "port_security", ("router",), False)


class Environment:
    """MariaDB, Keystone and the fabric controller, shared by the runs; a context manager."""

    def __init__(self, workdir: Path, *, venv: Path, mariadb: MariaDB | None = None) -> None:
        self.workdir = workdir
        self.venv = venv
        self._own_mariadb = mariadb is None  # else a running server the caller stops
        self.mariadb = mariadb or MariaDB(workdir / "mariadb", durable=False)
        self.keystone = Keystone(workdir / "keystone", mariadb=self.mariadb, venv=venv,
                                 database=f"keystone_{secrets.token_hex(4)}")
        self.fabric = FabricProcess(workdir / "fabric", faults=False)
        self.neutron_password = secrets.token_urlsafe(16)
        self._stack = contextlib.ExitStack()
        self.timings: dict[str, float] = {}

    def __enter__(self) -> Environment:
        with self._stack as stack:
            things: list[tuple[str, contextlib.AbstractContextManager[object]]] = [
                ("keystone", self.keystone), ("fabric", self.fabric)]
            for name, thing in [("mariadb", self.mariadb), *things] if self._own_mariadb else things:
                began = time.monotonic()
                stack.enter_context(thing)
                self.timings[name] = time.monotonic() - began
            self.keystone.add_service_user("neutron", self.neutron_password)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def authtoken(self) -> dict[str, object]:
        """Neutron's ``[keystone_authtoken]``: keystonemiddleware validates tokens as the ``neutron`` user."""
        return {"www_authenticate_uri": self.keystone.auth_url, "auth_url": self.keystone.auth_url,
                "auth_type": "password", "username": "neutron", "password": self.neutron_password,
                "project_name": "service", "user_domain_name": DOMAIN, "project_domain_name": DOMAIN,
                "region_name": "RegionOne", "service_token_roles_required": True}

    def neutron(self, driver: Driver, workdir: Path) -> NeutronStack:
        config: dict[str, Mapping[str, object]] = {}
        if driver.needs_controller:
            config["converge"] = {"controller_urls": self.fabric.url, "token_file": self.fabric.token_file}
        return NeutronStack(workdir, mariadb=self.mariadb, mechanism_drivers=driver.mechanism_drivers,
                            service_plugins=driver.service_plugins, config=config,
                            ml2_config={"ml2": {"extension_drivers": driver.extension_drivers}},
                            keystone_authtoken=self.authtoken())


class Admin:
    """Neutron's API as Keystone's admin (a project-scoped token)."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.headers = url, {"X-Auth-Token": token}

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        answer = httpx.request(method, f"{self.url}/v2.0{path}", json=body, headers=self.headers, timeout=60.0)
        answer.raise_for_status()
        return dict(answer.json()) if answer.content else {}

    def extensions(self) -> list[str]:
        return sorted(str(e["alias"]) for e in self.call("GET", "/extensions")["extensions"])

    def public_network(self) -> str:
        """An external flat network with an IPv4 and an IPv6 subnet, as devstack makes ``public``."""
        network = self.call("POST", "/networks", {"network": {
            "name": PUBLIC, "router:external": True, "provider:network_type": "flat",
            "provider:physical_network": PUBLIC}})["network"]
        self.call("POST", "/subnets", {"subnet": {
            "network_id": network["id"], "name": f"{PUBLIC}-subnet", "ip_version": 4, "cidr": "172.24.4.0/24",
            "gateway_ip": "172.24.4.1", "enable_dhcp": False}})
        self.call("POST", "/subnets", {"subnet": {
            "network_id": network["id"], "name": f"{PUBLIC}-subnet-v6", "ip_version": 6,
            "cidr": "2001:db8::/64", "gateway_ip": "2001:db8::2", "enable_dhcp": False}})
        return str(network["id"])


@dataclass(frozen=True)
class Run:
    """One driver's Tempest run: its results, how long the stack took to start, the extensions Neutron listed."""

    driver: str
    results: tempest.Results
    start_seconds: float
    extensions: tuple[str, ...]


def run_driver(env: Environment, driver: Driver, *, regex: str, concurrency: int,
               include_list: Path | None = None) -> Run:
    """Start Neutron with ``driver``, point the catalog at it, make ``public``, run Tempest, stop Neutron."""
    work = env.workdir / driver.name
    began = time.monotonic()
    with env.neutron(driver, work / "neutron") as stack:
        env.keystone.set_endpoint("network", "neutron", stack.url)
        admin = Admin(stack.url, env.keystone.token())
        cloud = tempest.Cloud(public_network_id=admin.public_network(), public_network_name=PUBLIC,
                              extensions=admin.extensions())
        started = time.monotonic() - began
        config = work / "etc" / "tempest.conf"
        tempest.write_config(config, keystone=env.keystone, cloud=cloud, log_dir=work)
        print(f"{driver.name}: Neutron up in {started:.0f} s at {stack.url} ({len(cloud.extensions)} API "
              f"extensions); running Tempest ({regex if include_list is None else include_list})", flush=True)
        results = tempest.run(work / "tempest", venv=env.venv, config=config, regex=regex,
                              concurrency=concurrency, include_list=include_list)
    return Run(driver.name, results, started, tuple(cloud.extensions))


def new_failures(converge: tempest.Results, baseline: tempest.Results) -> list[str]:
    """Converge's failures that the no-op run does not have: the driver's, not the environment's."""
    return sorted(set(converge.failed) - set(baseline.failed))


def report(runs: Sequence[Run], out: Path) -> None:
    for run in runs:
        r = run.results
        print(f"{run.driver:9} {r.summary()} in {r.seconds:.0f} s (tempest exit {r.exit_code})")
        for name in r.failed:
            print(f"  FAILED {name}")
    out.write_text(json.dumps([{"driver": run.driver, "start_seconds": round(run.start_seconds, 1),
                                "extensions": run.extensions,
                                **asdict(run.results)} for run in runs], indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="third-party-ci", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("var/third-party-ci"),
                        help="emptied first; logs, tempest.conf and results.json stay in it (default: %(default)s)")
    parser.add_argument("--venv", type=Path, default=Path(".venv-tempest"),
                        help="Keystone's and Tempest's virtualenv (default: %(default)s)")
    parser.add_argument("--drivers", default=",".join(DRIVERS), help="comma-separated, in order "
                        "(default: %(default)s; the comparison needs both)")
    parser.add_argument("--regex", default=tempest.NETWORK_API, help="tests to run (default: %(default)s)")
    parser.add_argument("--include-list", type=Path, help="a file of test regexes, instead of --regex")
    parser.add_argument("--concurrency", type=int, default=2, help="Tempest workers (default: %(default)s)")
    args = parser.parse_args(argv)
    drivers = {"converge": CONVERGE, "noop": NOOP}
    chosen = [drivers[name] for name in args.drivers.split(",") if name]
    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    began = time.monotonic()
    runs: list[Run] = []
    try:
        with interrupts(), Environment(work, venv=args.venv) as env:
            print(f"MariaDB, Keystone ({env.keystone.url}) and the fabric controller up in "
                  f"{sum(env.timings.values()):.0f} s", flush=True)
            for driver in chosen:
                runs.append(run_driver(env, driver, regex=args.regex, concurrency=args.concurrency,
                                       include_list=args.include_list and args.include_list.resolve()))
    except (NeutronStartError, KeystoneStartError, FabricStartError, httpx.HTTPError) as error:
        print(f"third-party-ci: the environment did not start: {error}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(work / "mariadb" / "data", ignore_errors=True)  # the databases; the logs stay
    report(runs, work / "results.json")
    print(f"all done in {time.monotonic() - began:.0f} s; logs, tempest.conf and results.json in {work}")
    for run in runs:
        r = run.results
        if not (r.passed or r.failed) or (r.exit_code != 0 and not r.failed):
            print(f"third-party-ci: the {run.driver} run ran no test or Tempest failed outside a test (exit "
                  f"{r.exit_code}): see {work / run.driver / 'tempest' / 'tempest-run.log'}", file=sys.stderr)
            return 2
    by_name = {run.driver: run.results for run in runs}
    if "converge" in by_name and "noop" in by_name:
        extra = new_failures(by_name["converge"], by_name["noop"])
        if extra:
            print(f"Converge fails {len(extra)} test(s) that pass with the no-op driver:")
            for name in extra:
                print(f"  {name}")
            return 1
        print("Converge fails no test that passes with the no-op driver")
        return 0
    return 1 if any(run.results.failed for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
