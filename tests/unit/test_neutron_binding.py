"""Which ports Converge binds and which hosts reach a network (pure)."""

from types import SimpleNamespace

from converge.neutron.binding import BindingPolicy

VXLAN = {"id": "s-vx", "network_type": "vxlan", "segmentation_id": 10}
VLAN_A = {"id": "s-a", "network_type": "vlan", "physical_network": "fabric-a", "segmentation_id": 100}
VLAN_B = {"id": "s-b", "network_type": "vlan", "physical_network": "legacy", "segmentation_id": 100}
GRE = {"id": "s-gre", "network_type": "gre", "segmentation_id": 7}


def policy(types=("vxlan", "vlan", "flat"), physnets=(), hosts=()) -> BindingPolicy:
    return BindingPolicy.from_options(SimpleNamespace(bind_network_types=list(types),
                                                      physical_networks=list(physnets), bind_hosts=list(hosts)))


def test_by_default_every_host_and_every_segment_of_a_bound_type():
    p = policy()
    assert p.segment_to_bind("any-host", [GRE, VLAN_B, VXLAN]) == VLAN_B
    assert p.segment_to_bind("any-host", [GRE]) is None
    assert p.hosts_with_access([VXLAN], ["c1", "c2"]) == {"c1", "c2"}
    assert p.hosts_with_access([GRE], ["c1", "c2"]) == set()


def test_physical_networks_limit_vlan_and_flat_segments_only():
    p = policy(physnets=["fabric-a"])
    assert p.segment_to_bind("c1", [VLAN_B, VLAN_A]) == VLAN_A
    assert p.segment_to_bind("c1", [VLAN_B]) is None
    assert p.segment_to_bind("c1", [VLAN_B, VXLAN]) == VXLAN  # no physical network to check
    assert p.hosts_with_access([VLAN_B], ["c1"]) == set()


def test_bind_hosts_leave_other_hosts_to_other_drivers():
    p = policy(hosts=["compute-*", "edge-1"])
    assert p.segment_to_bind("compute-7", [VXLAN]) == VXLAN
    assert p.segment_to_bind("edge-1", [VXLAN]) == VXLAN
    assert p.segment_to_bind("edge-10", [VXLAN]) is None
    assert p.segment_to_bind("", [VXLAN]) is None and p.segment_to_bind(None, [VXLAN]) is None
    assert p.hosts_with_access([GRE, VXLAN], ["compute-1", "network-1", "edge-1"]) == {"compute-1", "edge-1"}


def test_ovs_ports_get_ml2_ovns_vif_details_and_configured_keys_win():
    from converge.neutron.binding import vif_details

    assert vif_details("ovs", {}) == {"port_filter": True, "connectivity": "l2", "bridge_name": "br-int",
                                      "datapath_type": "system"}
    assert vif_details("ovs", {"datapath_type": "netdev", "port_filter": "False"}) == {
        "port_filter": False, "connectivity": "l2", "bridge_name": "br-int", "datapath_type": "netdev"}
    assert vif_details("vhostuser", {"vhostuser_mode": "server"}) == {"vhostuser_mode": "server"}
