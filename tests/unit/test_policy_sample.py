"""The ``converge-sync`` attributes' default policies: etc/policy.yaml.sample is what
oslopolicy-sample-generator makes of them today, both attributes are admin-only, and an operator's
policy.yaml opens ``converge:sync_state`` to project readers without opening ``converge:sync_error``.

The rules are evaluated by oslo.policy's own enforcer over Neutron's base rules (``admin_only``…), as
Neutron's enforcer loads them; tests/functional/test_neutron_sync_policy.py checks Neutron applying them."""

import subprocess
import sys
from pathlib import Path

import pytest
from neutron.conf.policies import base
from oslo_config import cfg
from oslo_policy import policy

from converge.neutron import policies

ROOT = Path(__file__).resolve().parents[2]
ADMIN = {"roles": ["admin", "member", "reader"], "project_id": "p1", "user_id": "u1"}
MEMBER = {"roles": ["member", "reader"], "project_id": "p1", "user_id": "u2"}
OPEN_STATE = '"converge_sync_state": "rule:admin_only or role:reader and project_id:%(project_id)s"\n'


def test_the_sample_policy_is_up_to_date(tmp_path):
    out = tmp_path / "policy.yaml.sample"
    generator = Path(sys.executable).parent / "oslopolicy-sample-generator"
    subprocess.run([str(generator), "--namespace", "converge", "--output-file", str(out)],
                   check=True, capture_output=True, cwd=ROOT)
    assert out.read_text() == (ROOT / "etc" / "policy.yaml.sample").read_text(), \
        "regenerate: oslopolicy-sample-generator --config-file etc/oslo-policy-generator/converge.conf"


def enforcer(tmp_path: Path, overrides: str = "") -> policy.Enforcer:
    conf = cfg.ConfigOpts()
    conf([], project="converge-test")
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(overrides or "{}\n")
    rules = policy.Enforcer(conf, policy_file=str(policy_file))
    rules.register_defaults(base.list_rules())
    rules.register_defaults(policies.list_rules())
    rules.load_rules(True)
    return rules


def readable(rules: policy.Enforcer, creds: dict[str, object], collection: str, attribute: str,
             owner: str = "p1") -> bool:
    return bool(rules.enforce(policies.attribute_rule(collection, attribute), {"project_id": owner}, creds))


@pytest.mark.parametrize("collection", sorted(policies.COLLECTION_RESOURCE))
def test_both_attributes_are_admin_only_by_default(tmp_path, collection):
    rules = enforcer(tmp_path)
    for attribute in ("converge:sync_state", "converge:sync_error"):
        assert readable(rules, ADMIN, collection, attribute)
        assert not readable(rules, MEMBER, collection, attribute), f"a member reads {attribute} of {collection}"


def test_an_operator_opens_the_state_to_project_readers_and_not_the_error(tmp_path):
    rules = enforcer(tmp_path, OPEN_STATE)
    for collection in policies.COLLECTION_RESOURCE:
        assert readable(rules, MEMBER, collection, "converge:sync_state")
        assert not readable(rules, MEMBER, collection, "converge:sync_state", owner="p2"), "another project's"
        assert not readable(rules, MEMBER, collection, "converge:sync_error")
        assert readable(rules, ADMIN, collection, "converge:sync_error")


def test_every_resource_of_the_extension_has_both_rules():
    from converge.neutron.extensions.converge_sync import EXTENDED_ATTRIBUTES_2_0

    names = {rule.name for rule in policies.list_rules()}
    for collection, attributes in EXTENDED_ATTRIBUTES_2_0.items():
        for attribute, spec in attributes.items():
            assert policies.attribute_rule(collection, attribute) in names
            assert spec["enforce_policy"] and not spec["allow_post"] and not spec["allow_put"]
