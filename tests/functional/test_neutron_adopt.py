"""An existing cloud adopted: resources made while Converge was not loaded (the stock ``logger`` driver and
Neutron's own ``router`` plugin), a router with a gateway and an interface among them, then ``converge
adopt`` records intent for all of them (idempotent: a second run changes nothing and says so), ``converge
drift --neutron`` finds what changed behind the store's back, ``converge repair --neutron`` records it,
and a standalone agent (``converge sync run --config-file …``) makes the controller match — routers and
router interfaces as the L3 plugin records them (``neutron_support.neutron_state``: their gateway and
addressing fields included)."""

from __future__ import annotations

import json
import subprocess
import sys

from neutron_support import L3_COLLECTIONS, MARKS, controller_state, neutron_state

from converge.testing.fabric import FabricProcess
from converge.testing.neutron import NeutronStack, owned

pytestmark = MARKS


def converge(*args, check=True):
    done = subprocess.run([sys.executable, "-m", "converge.cli.main", *args], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_adopt_drift_repair_and_a_standalone_agent_on_an_existing_cloud(tmp_path, mariadb):
    with FabricProcess(tmp_path / "fabric", faults=False) as fabric, \
            NeutronStack(tmp_path / "neutron", mariadb=mariadb, mechanism_drivers=["logger"],
                         service_plugins=["router"], periodic_workers=False,
                         config={"converge": {"controller_urls": fabric.url, "token": fabric.token}}) as stack:
        cloud = stack.connection()
        subnets = {}
        for p in ("p-old-1", "p-old-2"):
            net = cloud.network.create_network(**owned(p, name=f"{p}-net"))
            subnets[p] = cloud.network.create_subnet(**owned(p, network_id=net.id, cidr="10.9.0.0/24", ip_version=4))
            for i in range(3):
                cloud.network.create_port(**owned(p, network_id=net.id, name=f"vm-{i}"))
        public = cloud.network.create_network(**owned("p-old-public", name="public", is_router_external=True))
        cloud.network.create_subnet(**owned("p-old-public", network_id=public.id, cidr="172.24.4.0/24", ip_version=4))
        router = cloud.network.create_router(**owned("p-old-1", name="edge",
                                                     external_gateway_info={"network_id": public.id}))
        interface = cloud.network.add_interface_to_router(router, subnet_id=subnets["p-old-1"].id)["port_id"]
        config = [arg for path in stack.config_files for arg in ("--config-file", str(path))]
        neutron = ["--neutron-url", stack.url]

        first = converge("adopt", *config, *neutron, "--json")
        assert first.returncode == 0, first.stderr
        adopted = json.loads(first.stdout)
        assert adopted["recorded"] == adopted["resources"] > 10 and adopted["already_in_intent"] == 0

        again = converge("adopt", *config, *neutron)
        assert again.returncode == 0 and "no difference: intent already matches Neutron" in again.stdout, again.stdout

        assert converge("drift", "--neutron", *config, *neutron).returncode == 0
        port = next(iter(cloud.network.ports(project_id="p-old-1", name="vm-0")))
        cloud.network.update_port(port, name="renamed-behind-our-back")  # logger driver: no intent recorded
        drift = converge("drift", "--neutron", *config, *neutron)
        assert drift.returncode == 3 and f"update port {port.id}" in drift.stdout, drift.stdout
        repaired = converge("repair", "--neutron", *config, *neutron)
        assert repaired.returncode == 0, repaired.stderr
        assert converge("drift", "--neutron", *config, *neutron).returncode == 0

        agent = converge("sync", "run", "--until-idle", "--timeout", "120", *config)
        assert agent.returncode == 0, agent.stderr
        for project in ("p-old-1", "p-old-2", "p-old-public"):
            assert controller_state(fabric, project) == neutron_state(cloud, project, L3_COLLECTIONS), project
        edge = controller_state(fabric, "p-old-1")
        assert edge[("router", router.id)]["gateway_nexthops"] == ["172.24.4.1"]
        assert edge[("router_interface", interface)]["networks"] == ["10.9.0.1/24"]
