"""Neutron's own ML2 plugin unit tests for networks, subnets and ports, run with ``converge`` loaded.

Why: the driver runs inside Neutron's transactions, so the best check that it never breaks an API call is
Neutron's own test suite for the calls it hooks. Each class below is one of Neutron's
(``neutron.tests.unit.plugins.ml2.test_plugin``, from the installed wheel) with ``converge`` appended to
Neutron's test drivers (``logger`` and ``test`` stay: some assertions rely on them) and Converge's tables
created on the in-memory SQLite engine Neutron's fixture builds from its model metadata. The last class
checks that the driver really was loaded and recorded intent through the same test API.

Who runs it: pytest, with the rest of ``tests/`` (docs/design/neutron-unit-tests.md). Nothing is excluded;
an exclusion, if one is ever needed, goes in a ``conftest.py`` next to this file with its reason, and only
for a test that fails with Neutron's own drivers too.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

from neutron.db import provisioning_blocks
from neutron.db.models.provisioning_block import ProvisioningBlock
from neutron.plugins.ml2.common import exceptions as ml2_exc
from neutron.tests.unit.plugins.ml2 import test_plugin as ml2_tests  # the module: pytest must not collect
from neutron_lib import constants as n_const
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import resources
from neutron_lib.plugins import utils as plugin_utils
from oslo_config import cfg
from sqlalchemy import delete, select

from converge.neutron import config, port_status, translate
from converge.neutron.mech_driver import ConvergeMechanismDriver
from converge.store import schema

MECHANISM_DRIVERS = ["logger", "test", "converge"]


class ConvergeLoaded:
    """Mixin (first base) for Neutron's ML2 test cases: loads ``converge`` and gives it its tables."""

    _mechanism_drivers = MECHANISM_DRIVERS
    engine: Any

    def setUp(self, *args: Any, **kwargs: Any) -> None:
        config.register(cfg.CONF)
        # Neutron's unit tests never start workers, but make sure: no sync worker, no controller I/O.
        cfg.CONF.set_override("sync_workers", 0, group="converge")
        cfg.CONF.set_override("controller_urls", ["http://192.0.2.1:9"], group="converge")  # TEST-NET-1
        super().setUp(*args, **kwargs)

    def _setup_database_fixtures(self) -> None:
        # Runs in SqlTestCase.setUp, before the plugin loads: the engine is the process-wide in-memory
        # SQLite database; Neutron empties its own tables after each test, this empties Converge's.
        super()._setup_database_fixtures()
        schema.metadata.create_all(self.engine)
        self.addCleanup(_empty_converge_tables, self.engine)


def _empty_converge_tables(engine: Any) -> None:
    with engine.begin() as conn:
        for table in reversed(schema.metadata.sorted_tables):
            conn.execute(delete(table))


class TestMl2NetworksV2WithConverge(ConvergeLoaded, ml2_tests.TestMl2NetworksV2):
    pass


class TestMl2SubnetsV2WithConverge(ConvergeLoaded, ml2_tests.TestMl2SubnetsV2):
    pass


class TestMl2PortsV2WithConverge(ConvergeLoaded, ml2_tests.TestMl2PortsV2):
    pass


class TestConvergeRecordsIntent(ConvergeLoaded, ml2_tests.Ml2PluginV2TestCase):
    """The driver is loaded and writes intent in Neutron's transaction, through the test API."""

    def _desired(self) -> set[tuple[str, str]]:
        with self.engine.connect() as conn:
            return {(r.kind, r.id) for r in conn.execute(select(schema.desired.c.kind, schema.desired.c.id))}

    def _journal(self) -> list[tuple[str, str, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.journal.c.kind, schema.journal.c.id, schema.journal.c.op)
                                .order_by(schema.journal.c.seq))
            return [(r.kind, r.id, r.op) for r in rows]

    def test_converge_is_loaded(self) -> None:
        drivers = {d.name: d.obj for d in self.plugin.mechanism_manager.ordered_mech_drivers}
        self.assertEqual(MECHANISM_DRIVERS, list(drivers))
        self.assertIsInstance(drivers["converge"], ConvergeMechanismDriver)

    def test_create_and_delete_record_intent(self) -> None:
        with self.network() as net, self.subnet(network=net) as sub, self.port(subnet=sub) as port:
            n, s, p = net["network"]["id"], sub["subnet"]["id"], port["port"]["id"]
            groups = port["port"]["security_groups"]
            self.assertEqual(1, len(groups))  # the project's default group, created with the port
            self.assertLessEqual({("network", n), ("subnet", s), ("port", p), ("security_group", groups[0])},
                                 self._desired())
            created = [(k, i) for k, i, op in self._journal() if op == "create"]
            self.assertEqual([("network", n), ("subnet", s)], [c for c in created if c[1] in (n, s)])
            self.assertIn(("port", p), created)

            self._update("ports", p, {"port": {"name": "renamed"}})
            self.assertIn(("port", p, "update"), self._journal())

            # A schema built from the models has no default-rule templates, so the group came without
            # rules: add one (the security-group callbacks record it) and remove it again.
            rule = self.plugin.create_security_group_rule(self.context, {"security_group_rule": {
                "security_group_id": groups[0], "direction": "ingress", "ethertype": "IPv4",
                "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": None,
                "remote_group_id": None, "remote_address_group_id": None, "description": "",
                "project_id": port["port"]["project_id"]}})
            self.assertIn(("security_group_rule", rule["id"]), self._desired())
            self.plugin.delete_security_group_rule(self.context, rule["id"])
            self.assertIn(("security_group_rule", rule["id"], "delete"), self._journal())
            self.assertNotIn(("security_group_rule", rule["id"]), self._desired())
        for collection, oid in (("ports", p), ("subnets", s), ("networks", n)):
            self._delete(collection, oid)
        journal = self._journal()
        for kind, oid in (("port", p), ("subnet", s), ("network", n)):
            self.assertIn((kind, oid, "delete"), journal)
            self.assertNotIn((kind, oid), self._desired())

    def _desired_row(self, oid: str) -> tuple[str, int, str]:
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.desired.c.attributes, schema.desired.c.revision,
                                      schema.desired.c.digest).where(schema.desired.c.id == oid)).one()
        return row.attributes, int(row.revision), row.digest

    def test_an_update_records_only_when_something_the_controller_sees_changes(self) -> None:
        # Bound by Neutron's "test" driver to an ovs vif: the create records the port with its host; the
        # binding's own transaction changes nothing a controller needs (how the host plugs it: vif_type),
        # so it records nothing and the port is pushed once.
        with self.network() as net, self.subnet(network=net), self.port(
                network=net, name="vm", is_admin=True, arg_list=(portbindings.HOST_ID,),
                **{portbindings.HOST_ID: "host-ovs-no_filter"}) as port:
            p = port["port"]["id"]
            self.assertEqual("ovs", port["port"][portbindings.VIF_TYPE])
            self.assertEqual([("port", p, "create")], [row for row in self._journal() if row[1] == p])
            bound = self._desired_row(p)
            self.assertIn('"binding:host_id":"host-ovs-no_filter"', bound[0])
            self.assertNotIn("binding:vif_type", bound[0])
            with self.engine.connect() as conn:
                blocks = conn.execute(select(ProvisioningBlock.entity)).scalars().all()
            self.assertEqual([port_status.ENTITY], blocks)
            recorded = len(self._journal())

            self._update("ports", p, {"port": {"name": "vm", "description": ""}})  # the same values again
            self.assertEqual(recorded, len(self._journal()))

            # The controller says up: the port turns ACTIVE in a transaction that records nothing.
            provisioning_blocks.provisioning_complete(self.context, p, resources.PORT, port_status.ENTITY)
            self.assertEqual("ACTIVE", self._show("ports", p)["port"]["status"])
            self.assertEqual(recorded, len(self._journal()))
            self.assertEqual(bound, self._desired_row(p))

            self._update("ports", p, {"port": {"name": "vm-renamed"}})
            self.assertEqual(("port", p, "update"), self._journal()[-1])
            self.assertIn('"name":"vm-renamed"', self._desired_row(p)[0])

    def test_a_port_without_a_project_is_recorded_under_its_own_root(self) -> None:
        # As Neutron creates a router's gateway port and a floating IP's port (neutron/db/l3_db.py).
        with self.network() as net:
            port = plugin_utils.create_port(self.plugin, self.context, {"port": {
                "project_id": "", "network_id": net["network"]["id"], "device_id": "a-router",
                "device_owner": n_const.DEVICE_OWNER_ROUTER_GW, "name": "", "admin_state_up": True}})
        with self.engine.connect() as conn:
            roots = conn.execute(select(schema.desired.c.root).where(schema.desired.c.id == port["id"])).all()
        self.assertEqual([(translate.NO_PROJECT,)], [tuple(r) for r in roots])
        self.plugin.delete_port(self.context, port["id"])
        self.assertIn(("port", port["id"], "delete"), self._journal())
        self.assertNotIn(("port", port["id"]), self._desired())

    def test_intent_rolls_back_with_a_failed_neutron_change(self) -> None:
        manager = self.plugin.mechanism_manager
        record_then_fail = manager.create_network_precommit

        def fail_after_every_driver(context: Any) -> None:
            record_then_fail(context)  # converge has written its rows in Neutron's transaction by now
            raise ml2_exc.MechanismDriverError(method="create_network_precommit")

        with mock.patch.object(manager, "create_network_precommit", side_effect=fail_after_every_driver):
            res = self._create_network(self.fmt, "doomed", True)
        self.assertEqual(500, res.status_int)
        # The project's default security group was created (and recorded) in a transaction of its own.
        self.assertEqual([], [row for row in self._journal() if row[0] == "network"])
        self.assertEqual(set(), {key for key in self._desired() if key[0] == "network"})
