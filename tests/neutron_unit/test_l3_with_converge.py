"""Neutron's own L3 unit tests (routers, interfaces, gateways, floating IPs), run with Converge loaded.

Why: the L3 plugin ``converge_router`` records intent from callbacks inside Neutron's transactions, so the
best check that it never breaks an L3 API call is Neutron's own L3 test suite. Each Neutron class below
(``neutron.tests.unit.extensions.test_l3`` and a few L3 tests of ``neutron.tests.unit.plugins.ml2
.test_plugin``, from the installed wheel) runs on the ML2 core plugin with ``converge`` among the mechanism
drivers (``ConvergeLoaded``, shared with ``test_ml2_with_converge.py``) and with the real
``ConvergeL3RouterPlugin``, loaded by its entry point ``converge_router`` as production loads it. Neutron's
own classes use a test L3 plugin built from mixins; the production plugin differs in one way the tests
see: it creates floating IPs ``DOWN`` (an L3 agent sets them ``ACTIVE``), as OVN's Neutron tests say too.

After every test, intent must match Neutron (``ConvergeL3Loaded._check_intent``): each router (its name,
state and gateway: network, SNAT, addresses), router interface and floating IP (its network, address,
port, fixed address, router) Neutron holds is in ``converge_desired`` with the same values, and nothing
else of those kinds is. So Neutron's 188 scenarios, failures and rollbacks included, also check intent.

Who runs it: pytest, with the rest of ``tests/`` (docs/design/neutron-unit-tests.md). The two Neutron tests
that fail with Neutron's own L3 plugin on ML2 too are skipped in ``conftest.py``, with their reasons.
"""

from __future__ import annotations

import json
from typing import Any

from neutron.api import api_common
from neutron.db import models_v2
from neutron.db.models import l3 as l3_models
from neutron.tests.common import test_db_base_plugin_v2 as db_tests
from neutron.tests.unit.extensions import test_l3 as l3_tests  # the modules: pytest must not collect
from neutron.tests.unit.plugins.ml2 import test_plugin as ml2_tests
from neutron_lib import constants as n_const
from neutron_lib.callbacks import events, registry, resources
from neutron_lib.db.standard_attr import StandardAttribute
from neutron_lib.plugins import constants as plugin_constants
from neutron_lib.plugins import directory
from sqlalchemy import select
from test_ml2_with_converge import MECHANISM_DRIVERS, ConvergeLoaded
from webob import exc

from converge.core.kinds import Kind
from converge.neutron import l3, recorder, translate
from converge.neutron.mech_driver import ConvergeMechanismDriver
from converge.store import schema

L3_KINDS = ("router", "router_interface", "floating_ip")

# Tests after which intent cannot match Neutron, though nothing is wrong with Converge.
PUBLISH_MOCKED = "the test replaces registry.publish, so no callback runs (Neutron's own neither)"
INTENT_NOT_CHECKED = {
    "test_router_add_gateway_notifications": PUBLISH_MOCKED,
    "test_router_clear_gateway_callback_failure_returns_409": PUBLISH_MOCKED,
    "test_router_remove_interface_callback_failure_returns_409": PUBLISH_MOCKED,
    # A callback inside the router delete's transaction makes an API call that commits. Neutron's tests
    # share one SQLite connection, and oslo.db emits SQLite's BEGIN itself, once per connection: that
    # commit ends the delete's transaction too, so what the delete writes next (Converge's delete of the
    # router) autocommits, and is not undone when Neutron's revision check then fails the delete (409).
    # On a real database the two are separate transactions and both roll back.
    "test_router_delete_race_with_interface_add": "one shared SQLite connection: a nested commit",
}


class WithL3Api(db_tests.NeutronDbPluginV2TestCase):
    """Serves the L3 API (``self.ext_api``), as Neutron's L3 test bases do; after ML2's base in the MRO."""

    def setUp(self, plugin: Any = None, service_plugins: Any = None, ext_mgr: Any = None) -> None:
        super().setUp(plugin=plugin, service_plugins=service_plugins,
                      ext_mgr=ext_mgr or l3_tests.L3TestExtensionManager())
        self.setup_notification_driver()


class ConvergeL3Loaded(ConvergeLoaded):
    """Mixin (first base): ``converge`` in ML2, ``converge_router`` as the L3 plugin, intent checked after."""

    l3_plugin = "converge_router"

    def get_additional_service_plugins(self) -> dict[str, str]:
        return {"flavors": "flavors"}  # the L3 router plugin's driver controller needs it

    def setUp(self, *args: Any, **kwargs: Any) -> None:
        super().setUp(*args, **kwargs)
        # Cleanups run last-in first-out: this one before Neutron empties its tables (and Converge's).
        if self._testMethodName not in INTENT_NOT_CHECKED:
            self.addCleanup(self._check_intent)

    def _check_intent(self) -> None:
        with self.engine.connect() as conn:
            self.assertEqual(neutron_l3(conn), converge_l3(conn))

    def _intent(self) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
        """Converge's L3 rows: (kind, id) → (root, attributes)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.desired).where(schema.desired.c.kind.in_(L3_KINDS))).all()
        return {(r.kind, r.id): (r.root, json.loads(r.attributes)) for r in rows}

    def _journal(self) -> list[tuple[str, str, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.journal.c.kind, schema.journal.c.id, schema.journal.c.op)
                                .where(schema.journal.c.kind.in_(L3_KINDS)).order_by(schema.journal.c.seq))
            return [(r.kind, r.id, r.op) for r in rows]


def neutron_l3(conn: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """What Neutron's tables hold, in the terms Converge records (``l3.router_with_gateway``,
    ``l3.interface_of``, ``translate.FIELDS``)."""
    ips: dict[str, list[tuple[str, str]]] = {}
    for port_id, subnet_id, address in conn.execute(select(
            models_v2.IPAllocation.port_id, models_v2.IPAllocation.subnet_id, models_v2.IPAllocation.ip_address)):
        ips.setdefault(port_id, []).append((subnet_id, address))
    out: dict[tuple[str, str], dict[str, Any]] = {}
    router, gw = l3_models.Router, models_v2.Port
    for r in conn.execute(select(router.id, router.name, router.admin_state_up, router.enable_snat,
                                 router.gw_port_id, gw.network_id).outerjoin(gw, gw.id == router.gw_port_id)):
        out[("router", r.id)] = {"name": r.name or "", "admin_state_up": r.admin_state_up,
                                 "external_network_id": r.network_id,
                                 "enable_snat": r.enable_snat if r.network_id else None,
                                 "external_fixed_ips": sorted(ips.get(r.gw_port_id, []))}
    for f in conn.execute(select(l3_models.FloatingIP)):
        out[("floating_ip", f.id)] = {"floating_network_id": f.floating_network_id, "port_id": f.fixed_port_id,
                                      "floating_ip_address": f.floating_ip_address,
                                      "fixed_ip_address": f.fixed_ip_address, "router_id": f.router_id}
    for rp in conn.execute(select(l3_models.RouterPort).where(
            l3_models.RouterPort.port_type.in_(n_const.ROUTER_INTERFACE_OWNERS))):
        subnets = sorted({s for s, _ in ips.get(rp.port_id, [])})
        out[("router_interface", rp.port_id)] = {"router_id": rp.router_id, "port_id": rp.port_id,
                                                 "subnet_id": subnets[0] if subnets else None,
                                                 "subnet_ids": subnets}
    return out


def converge_l3(conn: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """The same view of ``converge_desired`` (an absent attribute is None)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    rows = conn.execute(select(schema.desired.c.kind, schema.desired.c.id, schema.desired.c.attributes)
                        .where(schema.desired.c.kind.in_(L3_KINDS)))
    for kind, oid, blob in rows:
        a = json.loads(blob)
        if kind == "router":
            out[(kind, oid)] = {"name": a.get("name", ""), "admin_state_up": a.get("admin_state_up"),
                                "external_network_id": a.get("external_network_id"),
                                "enable_snat": a.get("enable_snat"),
                                "external_fixed_ips": sorted((i["subnet_id"], i["ip_address"])
                                                             for i in a.get("external_fixed_ips") or ())}
        elif kind == "floating_ip":
            out[(kind, oid)] = {k: a.get(k) for k in ("floating_network_id", "port_id", "floating_ip_address",
                                                      "fixed_ip_address", "router_id")}
        else:
            out[(kind, oid)] = {k: a.get(k) for k in ("router_id", "port_id", "subnet_id", "subnet_ids")}
    return out


# -- Neutron's classes ----------------------------------------------------------------------------------

DOWN = n_const.FLOATINGIP_STATUS_DOWN


class TestL3NatWithConverge(ConvergeL3Loaded, l3_tests.L3NatTestCaseBase, l3_tests.L3NatDBTestCaseMixin,
                            ml2_tests.Ml2PluginV2TestCase, WithL3Api):
    """``L3NatDBSepTestCase``'s tests (routers, interfaces, gateways, floating IPs) on ML2."""

    # The production plugin creates floating IPs DOWN (neutron/services/l3_router/l3_router_plugin.py).
    def test_create_floatingip_with_assoc(self, expected_status: str = DOWN) -> None:
        super().test_create_floatingip_with_assoc(expected_status)

    def test_floatingip_update(self, expected_status: str = DOWN) -> None:
        super().test_floatingip_update(expected_status)

    def test_floatingip_update_to_same_port_id_twice(self, expected_status: str = DOWN) -> None:
        super().test_floatingip_update_to_same_port_id_twice(expected_status)

    def test_floatingip_update_subnet_gateway_disabled(self, expected_status: str = DOWN) -> None:
        super().test_floatingip_update_subnet_gateway_disabled(expected_status)

    def test_floatingip_with_invalid_create_port(self) -> None:
        # Neutron's test patches the core plugin it uses, NeutronDbPluginV2; ML2 defines its own create_port.
        self._test_floatingip_with_invalid_create_port("neutron.plugins.ml2.plugin.Ml2Plugin")


class TestL3AgentDbWithConverge(ConvergeL3Loaded, l3_tests.L3AgentDbTestCaseBase, ml2_tests.Ml2PluginV2TestCase,
                                WithL3Api):
    """``L3AgentDbSepTestCase``'s tests: the agent's sync data, and other callbacks on the router and floating
    IP precommit events next to Converge's (one changes the router in PRECOMMIT_CREATE, others raise)."""

    def setUp(self, *args: Any, **kwargs: Any) -> None:
        super().setUp(*args, **kwargs)
        self.core_plugin = directory.get_plugin()
        self.plugin = directory.get_plugin(plugin_constants.L3)  # what these tests call ``plugin``


class TestMl2L3WithConverge(ConvergeL3Loaded, ml2_tests.Ml2PluginV2TestCase, WithL3Api):
    """The L3 tests of ML2's test module, with Converge's L3 plugin in place of Neutron's test plugin (the
    rest of those classes runs in ``test_ml2_with_converge.py``)."""

    test_create_router_port_and_fail_create_postcommit = (
        ml2_tests.TestMl2PortsV2.test_create_router_port_and_fail_create_postcommit)
    test_create_router_port_and_fail_bind_port_if_needed = (
        ml2_tests.TestMl2PortsV2.test_create_router_port_and_fail_bind_port_if_needed)
    test_l3_cleanup_on_net_delete = ml2_tests.TestMl2PortsV2.test_l3_cleanup_on_net_delete
    test_delete_port_with_floatingip_create_precommit_event = (
        ml2_tests.TestMl2DvrPortsV2.test_delete_port_with_floatingip_create_precommit_event)
    test_concurrent_csnat_port_delete = ml2_tests.TestMl2DvrPortsV2.test_concurrent_csnat_port_delete


# -- Converge's own checks, through the same test API ---------------------------------------------------


class TestConvergeRecordsL3Intent(ConvergeL3Loaded, l3_tests.L3NatTestCaseMixin, ml2_tests.Ml2PluginV2TestCase,
                                  WithL3Api):
    """The plugin is Converge's, and each step of a router's life leaves the expected intent and journal."""

    def test_converge_is_loaded(self) -> None:
        self.assertIsInstance(directory.get_plugin(plugin_constants.L3), l3.ConvergeL3RouterPlugin)
        drivers = {d.name: d.obj for d in self.plugin.mechanism_manager.ordered_mech_drivers}
        self.assertEqual(MECHANISM_DRIVERS, list(drivers))
        self.assertIsInstance(drivers["converge"], ConvergeMechanismDriver)

    def test_router_gateway_interface_and_floating_ip_record_intent(self) -> None:
        root = translate.root_of({"project_id": self._project_id})
        with self.subnet(cidr="10.0.0.0/24") as public, self.subnet(cidr="10.1.0.0/24") as private, \
                self.port(subnet=private) as port, self.router() as router:
            ext_net, r = public["subnet"]["network_id"], router["router"]["id"]
            self._set_net_external(ext_net)
            router_root, attributes = self._intent()[("router", r)]
            self.assertEqual((root, "router1", True), (router_root, attributes["name"], attributes["admin_state_up"]))
            self.assertNotIn("external_network_id", attributes)

            self._add_external_gateway_to_router(r, ext_net)
            attributes = self._intent()[("router", r)][1]
            self.assertEqual((ext_net, True), (attributes["external_network_id"], attributes["enable_snat"]))

            i = self._router_interface_action("add", r, private["subnet"]["id"], None)["port_id"]
            # An interface added by subnet takes the subnet's gateway IP (10.1.0.1 of 10.1.0.0/24).
            mac = self._show("ports", i)["port"]["mac_address"]
            self.assertEqual((root, {"router_id": r, "subnet_id": private["subnet"]["id"],
                                     "subnet_ids": [private["subnet"]["id"]], "port_id": i,
                                     "mac_address": mac, "networks": [f"{private['subnet']['gateway_ip']}/24"]}),
                             self._intent()[("router_interface", i)])

            f = self._make_floatingip(self.fmt, ext_net, port_id=port["port"]["id"])["floatingip"]["id"]
            fip_root, attributes = self._intent()[("floating_ip", f)]
            self.assertEqual((root, port["port"]["id"], r), (fip_root, attributes["port_id"], attributes["router_id"]))

            self._update("floatingips", f, {"floatingip": {"port_id": None}})
            self.assertNotIn("port_id", self._intent()[("floating_ip", f)][1])
            self._delete("floatingips", f)
            self._router_interface_action("remove", r, private["subnet"]["id"], None)
            self._remove_external_gateway_from_router(r, ext_net)
            self.assertNotIn("external_network_id", self._intent()[("router", r)][1])
            self._delete("routers", r)

        self.assertEqual({}, self._intent())
        journal = self._journal()
        for key in (("router", r, "create"), ("router", r, "update"), ("router", r, "delete"),
                    ("router_interface", i, "delete"),
                    ("floating_ip", f, "create"), ("floating_ip", f, "update"), ("floating_ip", f, "delete")):
            self.assertIn(key, journal)
        self.assertIn(("router_interface", i), {(k, oid) for k, oid, op in journal if op != "delete"})

    def test_a_subnets_new_gateway_ip_re_records_the_routers_whose_gateway_is_on_it(self) -> None:
        pools = [{"start": "10.0.0.10", "end": "10.0.0.200"}]  # .254 is free to become the gateway
        with self.subnet(cidr="10.0.0.0/24", allocation_pools=pools) as public, \
                self.subnet(cidr="10.2.0.0/24") as elsewhere, \
                self.router() as one, self.router() as two, self.router() as other:
            routers = [one["router"]["id"], two["router"]["id"]]
            for subnet, router_ids in ((public, routers), (elsewhere, [other["router"]["id"]])):
                self._set_net_external(subnet["subnet"]["network_id"])
                for r in router_ids:
                    self._add_external_gateway_to_router(r, subnet["subnet"]["network_id"])
            before = {r: self._neutron_revision(r) for r in [*routers, other["router"]["id"]]}
            untouched = self._journal().count(("router", other["router"]["id"], "update"))

            self._update("subnets", public["subnet"]["id"], {"subnet": {"gateway_ip": "10.0.0.254"}})
            for r in routers:
                self.assertEqual(["10.0.0.254"], self._intent()[("router", r)][1]["gateway_nexthops"])
                self.assertLess(before[r], self._neutron_revision(r))  # bumped in the subnet's transaction
            self.assertEqual(["10.2.0.1"], self._intent()[("router", other["router"]["id"])][1]["gateway_nexthops"])
            self.assertEqual(before[other["router"]["id"]], self._neutron_revision(other["router"]["id"]))
            self.assertEqual(untouched, self._journal().count(("router", other["router"]["id"], "update")))

            self._update("subnets", public["subnet"]["id"], {"subnet": {"gateway_ip": None}})
            self.assertEqual([[], []], [self._intent()[("router", r)][1]["gateway_nexthops"] for r in routers])

    def _neutron_revision(self, router_id: str) -> int:
        """The router's revision in Neutron's table (this test API shows none: no revisions extension, so
        intent records revision 0 here; the functional test compares the two)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(StandardAttribute.revision_number).join(
                l3_models.Router, l3_models.Router.standard_attr_id == StandardAttribute.id).where(
                l3_models.Router.id == router_id)).scalar_one())

    def test_intent_rolls_back_with_a_failed_router_create(self) -> None:
        recorded: list[str | None] = []

        def fail(resource: str, event: str, trigger: Any, payload: Any) -> None:
            # Runs after Converge's handler, in the same transaction: the router's row is there.
            recorded.append(recorder.root_of_recorded(payload.context, Kind.ROUTER, payload.metadata["router_db"].id))
            raise RuntimeError("a later precommit callback fails the router create")

        registry.subscribe(fail, resources.ROUTER, events.PRECOMMIT_CREATE, priority=l3.AFTER_NEUTRON + 1)
        res = self._create_router(self.fmt)
        self.assertEqual(exc.HTTPInternalServerError.code, res.status_int)
        self.assertEqual([translate.root_of({"project_id": self._project_id})], recorded)
        self.assertEqual([], self._list("routers")["routers"])
        self.assertEqual(({}, []), (self._intent(), self._journal()))

    def test_routers_keep_native_pagination_and_sorting(self) -> None:
        # Neutron looks the flags up under the plugin's own class name (neutron/api/api_common.py), so a
        # subclass of L3RouterPlugin must declare them again, or routers and floating IPs are sorted and
        # paginated in Python, after loading every row.
        plugin = directory.get_plugin(plugin_constants.L3)
        self.assertTrue(api_common.is_native_pagination_supported(plugin))
        self.assertTrue(api_common.is_native_sorting_supported(plugin))
