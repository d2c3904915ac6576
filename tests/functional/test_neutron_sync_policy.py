"""Who sees ``converge:sync_state`` / ``converge:sync_error`` and who may filter lists by the state, through
the real Neutron API with Converge's default policies, then with an operator's policy.yaml.

Requests carry identities as Keystone's auth_token middleware would hand them on (``X-Project-Id``,
``X-Roles``…): the stack serves Neutron's keystone pipeline without ``authtoken``, so Neutron's own
context middleware and policy engine decide, without a Keystone. Every resource kind the extension covers
is created once, with one network the controller refuses (fault injection), so ``?converge:sync_state=error``
has something to find and something to leave out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from neutron_support import DEADLINE, MARKS, converge_stack, module_fabric  # noqa: F401 - the module's fabric

from converge.testing.fabric import FabricProcess
from converge.testing.mariadb import MariaDB
from converge.testing.neutron import NeutronStack

pytestmark = MARKS

PROJECT = "p-policy"
OTHER = "p-policy-other"
STATE, ERROR = "converge:sync_state", "converge:sync_error"
ADMIN = "admin,member,reader"
MEMBER = "member,reader"
OPEN_STATE = '"converge_sync_state": "rule:admin_only or role:reader and project_id:%(project_id)s"\n'
COLLECTIONS = ("networks", "subnets", "ports", "routers", "floatingips", "security_groups")


class KeystoneContextStack(NeutronStack):
    """Neutron's ``keystone`` paste pipeline minus ``authtoken``: the identity headers are trusted as is."""

    def write_config(self) -> None:
        super().write_config()
        paste = self.workdir / "api-paste.ini"
        lines = [line.replace(" authtoken ", " ") if line.startswith("keystone =") else line
                 for line in paste.read_text().splitlines()]
        paste.write_text("\n".join(lines) + "\n")

    def _wait_api(self) -> None:
        """As NeutronStack's, with an identity: a request without one is answered 401 by this pipeline."""
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                ready = api(self, ADMIN).get("/v2.0/networks").status_code == 200
                if ready and self._api_log_since_start().count(b"(default app)") >= self.processes:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the API did not answer\n{self.api_log_tail()}")


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text("{}\n")
    return path


@pytest.fixture(scope="module", name="stack")
def policy_stack(tmp_path_factory: pytest.TempPathFactory, mariadb: MariaDB, fabric: FabricProcess,
                 policy_file: Path) -> Iterator[NeutronStack]:
    base = converge_stack(tmp_path_factory.mktemp("neutron"), mariadb=mariadb, fabric=fabric,
                          service_plugins=("converge_router",))
    stack = KeystoneContextStack(base.workdir, mariadb=mariadb, mechanism_drivers=["converge"],
                                 service_plugins=["converge_router"],
                                 config={**base.extra_config, "DEFAULT": {"auth_strategy": "keystone"},
                                         "oslo_policy": {"policy_file": policy_file}},
                                 ml2_config=base.extra_ml2_config)
    with stack:
        yield stack


def api(stack: NeutronStack, roles: str, project: str = PROJECT) -> httpx.Client:
    return httpx.Client(base_url=stack.url, timeout=30.0, headers={
        "X-User-Id": f"user-{roles.split(',')[0]}", "X-Project-Id": project, "X-Roles": roles,
        "X-Identity-Status": "Confirmed"})


def create(client: httpx.Client, collection: str, **body: Any) -> dict[str, Any]:
    resource = collection[:-1]
    answer = client.post(f"/v2.0/{collection}", json={resource: body})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()[resource]
    return created


@pytest.fixture(scope="module")
def topology(stack: NeutronStack, fabric: FabricProcess) -> dict[str, str]:
    """One resource of every kind in PROJECT (a network the controller refuses among them), all settled."""
    admin = api(stack, ADMIN)
    external = create(admin, "networks", name="public", project_id=OTHER, **{"router:external": True})
    create(admin, "subnets", network_id=external["id"], cidr="172.24.4.0/24", ip_version=4, project_id=OTHER)
    fabric.admin("PUT", "/v1/admin/faults", {"reject_name_pattern": "^refused"})
    try:
        ids = {"refused": create(admin, "networks", name="refused-net", project_id=PROJECT)["id"]}
        ids["network"] = create(admin, "networks", name="fine", project_id=PROJECT)["id"]
        ids["subnet"] = create(admin, "subnets", network_id=ids["network"], cidr="10.9.0.0/24", ip_version=4,
                               project_id=PROJECT)["id"]
        ids["port"] = create(admin, "ports", network_id=ids["network"], project_id=PROJECT)["id"]
        ids["router"] = create(admin, "routers", name="r", project_id=PROJECT)["id"]
        ids["floatingip"] = create(admin, "floatingips", floating_network_id=external["id"],
                                   project_id=PROJECT)["id"]
        ids["security_group"] = create(admin, "security_groups", name="sg", project_id=PROJECT)["id"]
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            states = {c: {i["id"]: i[STATE] for i in admin.get(f"/v2.0/{c}?project_id={PROJECT}").json()[c]}
                      for c in COLLECTIONS}
            if states["networks"].get(ids["refused"]) == "error" and all(
                    s == "synced" for c, found in states.items() for i, s in found.items() if i != ids["refused"]):
                return ids
            time.sleep(0.2)
        pytest.fail(f"not settled: {states}")
    finally:
        fabric.admin("PUT", "/v1/admin/faults", {"reject_name_pattern": None})


def listed(client: httpx.Client, collection: str, query: str = "") -> httpx.Response:
    return client.get(f"/v2.0/{collection}?project_id={PROJECT}{query}")


def test_admins_see_both_attributes_and_filter_by_the_state(stack, topology):
    admin = api(stack, ADMIN)
    errors = listed(admin, "networks", f"&{STATE}=error").json()["networks"]
    assert [n["id"] for n in errors] == [topology["refused"]]
    assert "refused-net" in errors[0][ERROR]
    for collection in COLLECTIONS:
        synced = listed(admin, collection, f"&{STATE}=synced").json()[collection]
        assert synced and all(item[STATE] == "synced" for item in synced), collection
        assert topology["refused"] not in {item["id"] for item in synced}
        pending = listed(admin, collection, f"&{STATE}=pending").json()[collection]
        assert pending == [], collection
    both = listed(admin, "networks", f"&{STATE}=error&{STATE}=synced").json()["networks"]
    assert {n["id"] for n in both} == {topology["refused"], topology["network"]}


def test_members_neither_see_nor_filter_by_either_attribute_by_default(stack, topology):
    member = api(stack, MEMBER)
    for collection in COLLECTIONS:
        items = listed(member, collection).json()[collection]
        assert items, collection
        assert all(STATE not in i and ERROR not in i for i in items), collection
        refused = listed(member, collection, f"&{STATE}=error")
        assert refused.status_code == 403 and f"get_{collection[:-1]}:{STATE}" in refused.text, refused.text
    shown = member.get(f"/v2.0/networks/{topology['refused']}").json()["network"]
    assert STATE not in shown and ERROR not in shown


def test_a_members_create_answer_matches_its_show(stack, topology):
    """Tempest's test_show_port as a project member: the create's answer and a later show agree."""
    member, admin = api(stack, MEMBER), api(stack, ADMIN)
    port = create(member, "ports", network_id=topology["network"])
    end = time.monotonic() + DEADLINE
    while admin.get(f"/v2.0/ports/{port['id']}").json()["port"][STATE] != "synced" and time.monotonic() < end:
        time.sleep(0.2)  # synced since its create answered: a member shown the state would now see it differ
    shown = member.get(f"/v2.0/ports/{port['id']}").json()["port"]
    assert {k: v for k, v in shown.items() if k not in ("status", "updated_at")} == \
        {k: v for k, v in port.items() if k not in ("status", "updated_at")}
    assert STATE not in port


def test_an_operator_opens_the_state_to_project_readers_but_not_the_error(stack, topology, policy_file):
    policy_file.write_text(OPEN_STATE)
    later = time.time() + 2  # oslo.policy reloads a policy file whose mtime changed
    os.utime(policy_file, (later, later))
    try:
        member = api(stack, MEMBER)
        end = time.monotonic() + 30
        while STATE not in listed(member, "networks").json()["networks"][0] and time.monotonic() < end:
            time.sleep(0.2)  # each API worker notices the new file at its next check
        for collection in COLLECTIONS:
            items = listed(member, collection).json()[collection]
            assert all(STATE in i and ERROR not in i for i in items), collection
        errors = listed(member, "networks", f"&{STATE}=error")
        assert errors.status_code == 200 and [n["id"] for n in errors.json()["networks"]] == [topology["refused"]]
        assert ERROR not in errors.json()["networks"][0]
    finally:
        policy_file.write_text("{}\n")
        os.utime(policy_file, (later + 2, later + 2))
