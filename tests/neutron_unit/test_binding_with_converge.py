"""Converge's binding and host filtering inside Neutron's ML2 plugin (Neutron's unit-test harness, SQLite):
ports are bound only for the hosts and physical networks Converge serves, and ML2's host filtering for
agent scheduling stays on and answers the same way (``converge.neutron.binding``)."""

from __future__ import annotations

from typing import Any

from neutron.tests.unit.plugins.ml2 import test_plugin as ml2_tests  # the module: pytest must not collect
from neutron_lib.api.definitions import portbindings
from oslo_config import cfg
from test_ml2_with_converge import ConvergeLoaded

from converge.neutron import config

PROVIDER = ("provider:network_type", "provider:physical_network", "provider:segmentation_id")


class TestConvergeBindsWhatItServes(ConvergeLoaded, ml2_tests.Ml2PluginV2TestCase):
    _mechanism_drivers = ["converge"]

    def setUp(self, *args: Any, **kwargs: Any) -> None:
        config.register(cfg.CONF)
        cfg.CONF.set_override("bind_hosts", ["compute-*"], group="converge")
        cfg.CONF.set_override("physical_networks", ["physnet1"], group="converge")
        super().setUp(*args, **kwargs)

    def _vlan_network(self, physnet: str, vid: int) -> str:
        net = self._make_network(self.fmt, f"on-{physnet}", True, as_admin=True, arg_list=PROVIDER, **{
            "provider:network_type": "vlan", "provider:physical_network": physnet,
            "provider:segmentation_id": vid})
        self._make_subnet(self.fmt, net, "10.0.0.1", "10.0.0.0/24", as_admin=True)
        return str(net["network"]["id"])

    def _vif_type(self, network_id: str, host: str) -> str:
        port = self._make_port(self.fmt, network_id, as_admin=True, arg_list=(portbindings.HOST_ID,),
                               **{portbindings.HOST_ID: host})
        return str(port["port"][portbindings.VIF_TYPE])

    def test_ports_are_bound_only_on_served_hosts_and_physical_networks(self) -> None:
        served, other = self._vlan_network("physnet1", 10), self._vlan_network("physnet2", 210)
        self.assertEqual("ovs", self._vif_type(served, "compute-1"))
        self.assertEqual(portbindings.VIF_TYPE_BINDING_FAILED, self._vif_type(served, "gateway-1"))
        self.assertEqual(portbindings.VIF_TYPE_BINDING_FAILED, self._vif_type(other, "compute-1"))

    def test_host_filtering_stays_on_and_answers_like_binding(self) -> None:
        self.assertTrue(self.plugin.mechanism_manager.host_filtering_supported)
        served, other = self._vlan_network("physnet1", 11), self._vlan_network("physnet2", 211)
        hosts = ["compute-1", "compute-2", "gateway-1"]
        self.assertEqual({"compute-1", "compute-2"},
                         self.plugin.filter_hosts_with_network_access(self.context, served, hosts))
        self.assertEqual(set(), self.plugin.filter_hosts_with_network_access(self.context, other, hosts))
