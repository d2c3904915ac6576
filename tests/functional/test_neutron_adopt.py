"""An existing cloud adopted: resources made while Converge was not loaded (the stock ``logger`` driver),
then ``converge adopt`` records intent for all of them (idempotent: a second run changes nothing and says
so), ``converge drift --neutron`` finds what changed behind the store's back, ``converge repair --neutron``
records it, and a standalone agent (``converge sync run --config-file …``) makes the controller match."""

from __future__ import annotations

import json
import subprocess
import sys

from neutron_support import MARKS
from test_neutron_converge import COLLECTIONS

from converge.neutron import translate
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
                         periodic_workers=False,
                         config={"converge": {"controller_urls": fabric.url, "token": fabric.token}}) as stack:
        cloud = stack.connection()
        for p in ("p-old-1", "p-old-2"):
            net = cloud.network.create_network(**owned(p, name=f"{p}-net"))
            cloud.network.create_subnet(**owned(p, network_id=net.id, cidr="10.9.0.0/24", ip_version=4))
            for i in range(3):
                cloud.network.create_port(**owned(p, network_id=net.id, name=f"vm-{i}"))
        config = [arg for path in stack.config_files for arg in ("--config-file", str(path))]
        neutron = ["--neutron-url", stack.url]

        first = converge("adopt", *config, *neutron, "--json")
        assert first.returncode == 0, first.stderr
        adopted = json.loads(first.stdout)
        assert adopted["recorded"] == adopted["resources"] > 10 and adopted["already_in_intent"] == 0

        again = converge("adopt", *config, *neutron)
        assert again.returncode == 0 and "nothing to adopt" in again.stdout, again.stdout

        assert converge("drift", "--neutron", *config, *neutron).returncode == 0
        port = next(iter(cloud.network.ports(project_id="p-old-1")))
        cloud.network.update_port(port, name="renamed-behind-our-back")  # logger driver: no intent recorded
        drift = converge("drift", "--neutron", *config, *neutron)
        assert drift.returncode == 3 and f"update port {port.id}" in drift.stdout, drift.stdout
        repaired = converge("repair", "--neutron", *config, *neutron)
        assert repaired.returncode == 0, repaired.stderr
        assert converge("drift", "--neutron", *config, *neutron).returncode == 0

        agent = converge("sync", "run", "--until-idle", "--timeout", "120", *config)
        assert agent.returncode == 0, agent.stderr
        for project in ("p-old-1", "p-old-2"):
            want = {}
            for kind, collection in COLLECTIONS.items():
                for item in cloud.network.get(f"/{collection}?project_id={project}").json()[collection]:
                    want[(kind.value, item["id"])] = translate.attributes(kind, item)
            have = {(o["kind"], o["id"]): o["attributes"] for o in fabric.objects(project)}
            assert have == want
