"""The OVN harness: a control plane northd translates for, NB going down and back, and a chassis whose
namespaces ping each other through OVN's flows, then leave nothing behind.

One control plane and one chassis per module (a chassis registers once per control plane: SB allows one
(geneve, 127.0.0.1) encapsulation). Timings go to stdout (``pytest -s``) as ``harness timing``.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from converge.testing.ovn import OvnControlPlane, OvnDataplane
from converge.testing.processes import CommandError, StartError, program, run

pytestmark = pytest.mark.ovn


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OvnControlPlane]:
    with OvnControlPlane(tmp_path_factory.mktemp("ovn-control")) as control:
        print(f"\nharness timing: control plane up in {control.timings['total']:.3f} s ({steps(control.timings)})")
        yield control


@pytest.fixture(scope="module")
def dataplane(control: OvnControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OvnDataplane]:
    with OvnDataplane(control, tmp_path_factory.mktemp("ovn-chassis")) as dataplane:
        print(f"\nharness timing: chassis up in {dataplane.timings['total']:.3f} s ({steps(dataplane.timings)})")
        yield dataplane


def steps(timings: dict[str, float]) -> str:
    return ", ".join(f"{step} {seconds:.3f} s" for step, seconds in timings.items() if step != "total")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def namespaces() -> set[str]:
    return {line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip()}


def root_devices() -> set[str]:
    return {line.split()[0].split("@")[0] for line in run(["ip", "-br", "link"]).splitlines()}


def add_port(control: OvnControlPlane, switch: str, port: str, mac: str, ip: str) -> None:
    control.nbctl("lsp-add", switch, port, "--", "lsp-set-addresses", port, f"{mac} {ip}")


def test_the_control_plane_serves_nb_northd_fills_sb_and_stop_leaves_no_process(tmp_path: Path) -> None:
    with OvnControlPlane(tmp_path) as control:
        pids = control.pids()
        assert set(pids) == {"ovsdb-server-nb", "ovsdb-server-sb", "ovn-northd"}
        control.nbctl("ls-add", "sw0")
        switch = control.nbctl("get", "Logical_Switch", "sw0", "_uuid")
        control.nbctl("--wait=sb", "sync")
        binding = control.sbctl("--bare", "--columns=external_ids", "find", "Datapath_Binding",
                                f"external_ids:logical-switch={switch}")
        assert "name=sw0" in binding
        # Both databases also answer on their loopback TCP ports.
        assert run([program("ovn-nbctl"), f"--db={control.nb_tcp}", "ls-list"]).endswith("(sw0)")
        assert run([program("ovn-sbctl"), f"--db={control.sb_tcp}", "--bare", "--columns=tunnel_key",
                    "list", "Datapath_Binding"]) == "1"
        assert all(map(alive, pids.values()))
    assert control.pids() == {}
    assert not any(map(alive, pids.values()))
    control.stop()  # idempotent


def test_a_start_failure_stops_what_started_and_shows_the_log(tmp_path: Path) -> None:
    (tmp_path / "nb.db").write_text("not an OVSDB file\n")
    control = OvnControlPlane(tmp_path)
    with pytest.raises(StartError) as failure:
        control.start()
    message = str(failure.value)
    assert message.startswith("ovsdb-server-nb exited with 1") and "ovsdb-server-nb.log ---" in message
    assert message.endswith("nb.db: unexpected file format")
    assert control.pids() == {}


def test_a_chassis_whose_control_plane_stopped_first_still_stops_cleanly(tmp_path: Path) -> None:
    """Its own control plane (SB allows one chassis on 127.0.0.1), beside the module's: the namespaces
    keep the two datapaths apart."""
    control = OvnControlPlane(tmp_path / "control").start()
    try:
        dataplane = OvnDataplane(control, tmp_path / "chassis").start()
        vm = dataplane.add_vm("vm", "p", "fa:16:3e:00:00:09", "10.9.0.9/24")
    finally:
        control.stop()
    pids = dataplane.pids()
    dataplane.stop()
    assert not any(map(alive, pids.values()))
    assert not {dataplane.namespace, vm.namespace} & namespaces()


def test_nb_stopped_then_started_keeps_its_data_socket_and_port(control: OvnControlPlane) -> None:
    control.nbctl("ls-add", "kept")
    tcp, pid = control.nb_tcp, control.pids()["ovsdb-server-nb"]
    control.stop_nb()
    assert "ovsdb-server-nb" not in control.pids() and not alive(pid)
    began = time.monotonic()
    with pytest.raises(CommandError, match="database connection failed"):
        control.nbctl("ls-list", timeout=2)  # the socket is gone: no wait for the timeout
    assert time.monotonic() - began < 2
    with pytest.raises(CommandError):
        run([program("ovn-nbctl"), f"--db={tcp}", "--timeout=1", "ls-list"])
    control.start_nb()
    assert control.nb_tcp == tcp and control.pids()["ovsdb-server-nb"] != pid
    assert run([program("ovn-nbctl"), f"--db={tcp}", "ls-list"]).endswith("(kept)")
    control.nbctl("--wait=sb", "sync", timeout=10)  # northd reconnected
    control.nbctl("ls-del", "kept")


def test_two_vms_on_a_switch_ping_until_one_port_is_deleted(control: OvnControlPlane,
                                                            dataplane: OvnDataplane) -> None:
    # Named like Neutron ports: by their uuid.
    port1, port2 = str(uuid.uuid4()), str(uuid.uuid4())
    control.nbctl("ls-add", "net1")
    add_port(control, "net1", port1, "fa:16:3e:00:00:01", "10.1.0.11")
    add_port(control, "net1", port2, "fa:16:3e:00:00:02", "10.1.0.12")

    began = time.monotonic()
    vm1 = dataplane.add_vm("vm1", port1, "fa:16:3e:00:00:01", "10.1.0.11/24")
    vm2 = dataplane.add_vm("vm2", port2, "fa:16:3e:00:00:02", "10.1.0.12/24", gateway="10.1.0.1")
    plugged = time.monotonic()
    dataplane.wait_bound(port1)
    dataplane.wait_bound(port2)
    bound = time.monotonic()
    assert vm1.wait_ping(vm2.ip, timeout=10)
    pinged = time.monotonic()
    print(f"\nharness timing: 2 VMs plugged in {plugged - began:.3f} s, bound {bound - plugged:.3f} s later, "
          f"first ping {pinged - bound:.3f} s later")

    chassis = control.sbctl("--bare", "--columns=_uuid", "find", "Chassis", f"name={dataplane.chassis}")
    assert control.sbctl("--bare", "--columns=chassis", "find", "Port_Binding", f'logical_port="{port2}"') == chassis
    assert vm2.ping(vm1.ip, count=3)
    assert vm2.exec("ip", "route", "show", "default").stdout.startswith("default via 10.1.0.1 dev eth0")
    assert vm1.exec("ip", "-br", "link", "show", "eth0").stdout.split()[2] == "fa:16:3e:00:00:01"

    control.nbctl("--wait=hv", "lsp-del", port2)
    assert not vm1.ping(vm2.ip)
    dataplane.remove_vm(vm2)
    assert vm2.namespace not in namespaces() and [vm.name for vm in dataplane.vms] == ["vm1"]
    dataplane.remove_vm("vm2")  # idempotent


def test_the_chassis_stops_leaving_no_namespace_device_process_or_chassis(control: OvnControlPlane,
                                                                           dataplane: OvnDataplane) -> None:
    """Runs last in the module: it stops the module's chassis (the fixture's stop is then a no-op)."""
    dataplane.add_vm("vm3", str(uuid.uuid4()), "fa:16:3e:00:00:03", "10.1.0.13/24")
    ours = {dataplane.namespace, *(vm.namespace for vm in dataplane.vms)}
    assert ours <= namespaces()
    datapath_devices = run(["ip", "-n", dataplane.namespace, "-br", "link"])
    assert "ovs-netdev" in datapath_devices and "br-int" in datapath_devices  # not in the root namespace
    devices = {vm.device for vm in dataplane.vms}
    pids = dataplane.pids()
    assert set(pids) == {"ovsdb-server", "ovs-vswitchd", "ovn-controller"}

    dataplane.stop()
    dataplane.stop()
    assert not ours & namespaces()
    assert not devices & root_devices()
    assert dataplane.pids() == {} and not any(map(alive, pids.values()))
    assert dataplane.vms == []
    assert dataplane.chassis not in control.sbctl("--bare", "--columns=name", "list", "Chassis")
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run(["ip", "netns", "exec", dataplane.namespace, "true"], check=True, capture_output=True)
