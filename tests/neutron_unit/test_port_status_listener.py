"""The port-status listener turns ports ACTIVE through any ``Backend``: here the in-memory one, inside
Neutron's own ML2 unit-test plugin (``converge`` loaded, so bound ports carry Converge's provisioning block).

A port reported up while the listener follows completes its block at once; one that went up while nobody
listened (an event missed across a reconnection) is found by the resynchronisation every (re)connection
runs, through ``Backend.port_status``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from neutron.db.models.provisioning_block import ProvisioningBlock
from neutron.tests.unit.plugins.ml2 import test_plugin as ml2_tests  # the module: pytest must not collect
from neutron_lib.api.definitions import portbindings
from sqlalchemy import select
from test_ml2_with_converge import ConvergeLoaded

from converge.backends.base import PortStatus
from converge.core.canonical import ObjectDoc
from converge.core.ids import ObjectId
from converge.core.kinds import Kind
from converge.neutron import port_status
from converge.neutron.port_status import PortStatusListener
from converge.testing.memory import MemoryBackend


class TestPortStatusListener(ConvergeLoaded, ml2_tests.Ml2PluginV2TestCase):
    def _bound_port(self, net: Any, name: str) -> dict[str, Any]:
        with self.port(network=net, name=name, is_admin=True, arg_list=(portbindings.HOST_ID,),
                       **{portbindings.HOST_ID: "host-ovs-no_filter"}) as port:
            return dict(port["port"])

    def _held(self, backend: MemoryBackend, port: dict[str, Any]) -> None:
        """The controller holds the port (as the sync worker would have pushed it), still down."""
        doc = ObjectDoc(Kind.PORT, ObjectId(port["id"]), {"network_id": port["network_id"]}, 1)
        backend.drift(port["project_id"], Kind.PORT, port["id"], doc)

    def _blocked(self) -> set[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(ProvisioningBlock.entity, ProvisioningBlock.standard_attr_id)).all()
        return {str(attr) for entity, attr in rows if entity == port_status.ENTITY}

    def test_ports_reported_up_turn_active_and_a_missed_event_is_found_on_connect(self) -> None:
        backend = MemoryBackend()
        with self.network() as net:
            missed, live, quiet = (self._bound_port(net, name) for name in ("missed", "live", "quiet"))
            for port in (missed, live, quiet):
                self._held(backend, port)
                self.assertEqual("DOWN", self._show("ports", port["id"])["port"]["status"])
            backend.set_port_status(missed["id"], PortStatus.UP)  # nobody listens yet: the event is lost

            listener = PortStatusListener(backend)
            listener.start()  # connects, and resynchronises the ports Converge still blocks
            self.assertTrue(listener.wait_idle())
            self.assertEqual("ACTIVE", self._show("ports", missed["id"])["port"]["status"])
            self.assertEqual("DOWN", self._show("ports", live["id"])["port"]["status"])

            backend.set_port_status(live["id"], PortStatus.UP)  # while following: completed at once
            self.assertTrue(listener.wait_idle())
            self.assertEqual("ACTIVE", self._show("ports", live["id"])["port"]["status"])
            self.assertEqual("DOWN", self._show("ports", quiet["id"])["port"]["status"])
            self.assertEqual(1, len(self._blocked()))  # only the quiet port is still held DOWN

            listener.stop()
            backend.set_port_status(quiet["id"], PortStatus.UP)  # stopped: nothing happens
            self.assertEqual("DOWN", self._show("ports", quiet["id"])["port"]["status"])

    def test_a_port_up_whose_event_came_before_its_block_is_completed_by_the_periodic_resync(self) -> None:
        """The controller held a port pushed at create time and reported it up before the binding
        transaction added Converge's block: that event completed nothing, and no other comes. The next
        periodic resync (run here by hand: the unit tests' in-memory database is not for two threads)
        completes it."""
        backend = MemoryBackend()
        listener = PortStatusListener(backend, resync_interval=3600)
        listener.start()
        try:
            with self.network() as net:
                port = self._bound_port(net, "early")
                self._held(backend, port)
                key = ("port", port["id"])
                backend.state[key] = dataclasses.replace(backend.state[key], status=PortStatus.UP)  # event spent
                self.assertEqual("DOWN", self._show("ports", port["id"])["port"]["status"])
                listener.resync()
                self.assertTrue(listener.wait_idle())
                self.assertEqual("ACTIVE", self._show("ports", port["id"])["port"]["status"])
                self.assertEqual(0, len(self._blocked()))
        finally:
            listener.stop()

    def test_the_listener_resyncs_every_interval_until_stopped(self) -> None:
        listener = PortStatusListener(MemoryBackend(), resync_interval=0.01)
        ticks: list[float] = []
        listener.resync = lambda: ticks.append(time.monotonic())  # type: ignore[method-assign]
        listener.start()
        deadline = time.monotonic() + 10
        while len(ticks) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        listener.stop()
        self.assertGreaterEqual(len(ticks), 3)
        after = len(ticks)
        time.sleep(0.1)
        self.assertLessEqual(len(ticks), after + 1)  # stopped: at most the tick already under way
