"""Ports reported up are completed in batches (converge/neutron/port_status.py).

The :class:`Coalescer` is pure: a fake clock decides when a batch is due, no test sleeps. :func:`complete`
runs inside Neutron's own ML2 unit-test plugin (``converge`` loaded, so bound ports carry Converge's
provisioning block): a batch turns every port ACTIVE through Neutron's own update, so each port's
revision moves and Neutron publishes a port ``AFTER_UPDATE`` (what the nova notifier turns into
``network-vif-plugged``) for each; a port whose update fails does not keep the others DOWN; a port still
blocked by someone else stays DOWN; anything but the plain case, and everything when another listener
waits for ``PROVISIONING_COMPLETE``, goes through Neutron's per-port path.
"""

from __future__ import annotations

import threading
import unittest
from typing import Any

from neutron.db import models_v2, provisioning_blocks
from neutron.tests.unit.plugins.ml2 import test_plugin as ml2_tests  # the module: pytest must not collect
from neutron_lib import context as n_context
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import events, registry, resources
from neutron_lib.db import api as db_api
from neutron_lib.plugins import directory
from test_ml2_with_converge import ConvergeLoaded

from converge.core.canonical import ObjectDoc
from converge.core.ids import ObjectId
from converge.core.kinds import Kind
from converge.neutron import port_status
from converge.neutron.port_status import Coalescer, Completion, complete
from converge.testing.clock import FakeClock
from converge.testing.memory import MemoryBackend


class TestCoalescer(unittest.TestCase):
    def test_a_full_batch_is_taken_at_once_and_the_rest_when_its_window_has_passed(self) -> None:
        clock = FakeClock()
        queue = Coalescer(window=0.05, max_batch=100, clock=clock.monotonic)
        for n in range(250):
            queue.put(f"p{n}")
        self.assertEqual([f"p{n}" for n in range(100)], queue.take())
        self.assertEqual([f"p{n}" for n in range(100, 200)], queue.take())
        clock.advance(0.05)  # the 50 left over waited a window: due without a full batch
        self.assertEqual([f"p{n}" for n in range(200, 250)], queue.take())

    def test_a_port_reported_twice_before_its_batch_is_taken_once(self) -> None:
        clock = FakeClock()
        queue = Coalescer(window=0.05, clock=clock.monotonic)
        for port in ("a", "b", "a", "c", "b"):
            queue.put(port)
        clock.advance(0.05)
        self.assertEqual(["a", "b", "c"], queue.take())

    def test_a_batch_waits_within_its_window_for_the_ports_that_follow(self) -> None:
        queue = Coalescer(window=60.0, max_batch=3)  # the batch is due when full, long before 60 s
        taken: list[list[str]] = []
        taker = threading.Thread(target=lambda: taken.append(queue.take()))
        queue.put("a")
        taker.start()
        queue.put("b")
        queue.put("c")
        taker.join(10)
        self.assertEqual([["a", "b", "c"]], taken)

    def test_idle_only_when_nothing_waits_and_the_batch_taken_is_done(self) -> None:
        clock = FakeClock()
        queue = Coalescer(window=0.05, clock=clock.monotonic)
        self.assertTrue(queue.wait_idle(0))
        queue.put("a")
        self.assertFalse(queue.wait_idle(0))
        clock.advance(0.05)
        self.assertEqual(["a"], queue.take())
        self.assertFalse(queue.wait_idle(0))  # being completed
        queue.done()
        self.assertTrue(queue.wait_idle(0))

    def test_closing_ends_a_waiting_take_with_no_batch(self) -> None:
        queue = Coalescer()
        taken: list[list[str]] = []
        taker = threading.Thread(target=lambda: taken.append(queue.take()))
        taker.start()
        queue.close()
        taker.join(10)
        self.assertEqual([[]], taken)


class TestCompleteInBatches(ConvergeLoaded, ml2_tests.Ml2PluginV2TestCase):
    def get_additional_service_plugins(self) -> dict[str, str]:
        return {"revisions": "revisions"}  # as in a real Neutron: every update bumps the revision

    def setUp(self) -> None:
        super().setUp()
        self.updates: list[tuple[str, str, str]] = []  # port, status before, after
        registry.subscribe(self._after_update, resources.PORT, events.AFTER_UPDATE)

    def _after_update(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        before, after = payload.states
        self.updates.append((payload.resource_id, before["status"], after["status"]))

    def _bound_ports(self, count: int, **attributes: Any) -> list[dict[str, Any]]:
        ports = []
        with self.network() as net:
            for n in range(count):
                with self.port(network=net, name=f"p{n}", is_admin=True,
                               arg_list=(portbindings.HOST_ID, *attributes),
                               **{portbindings.HOST_ID: "host-ovs-no_filter", **attributes}) as port:
                    ports.append(dict(port["port"]))
        self.updates.clear()  # the binding's own updates
        return ports

    def _status(self, port: dict[str, Any]) -> str:
        return str(self._show("ports", port["id"])["port"]["status"])

    def _revision(self, port: dict[str, Any]) -> int:
        return int(self._show("ports", port["id"])["port"]["revision_number"])

    def test_a_batch_turns_every_port_active_with_neutrons_update_and_event_for_each(self) -> None:
        ports = self._bound_ports(5)
        self.assertEqual(["DOWN"] * 5, [self._status(p) for p in ports])
        ids = [p["id"] for p in ports]
        revisions = [self._revision(p) for p in ports]

        done = complete(ids)

        self.assertEqual(Completion(updated=tuple(ids)), done)  # all together, none left to the per-port path
        self.assertEqual(["ACTIVE"] * 5, [self._status(p) for p in ports])
        self.assertEqual(sorted((i, "DOWN", "ACTIVE") for i in ids), sorted(self.updates))  # one event per port
        for port, revision in zip(ports, revisions, strict=True):
            self.assertGreater(self._revision(port), revision)
        self.assertEqual(Completion(untouched=tuple(ids)), complete(ids))  # reported again: nothing to do
        self.assertEqual(5, len(self.updates))

    def test_nova_hears_network_vif_plugged_for_every_port_of_a_batch(self) -> None:
        """The nova notifier (ML2's, on ORM events of the port's status) queues one event per port."""
        ports = self._bound_ports(4, device_owner="compute:nova", device_id="7e0f4bde-4f6f-4b57-9a3a-c0ffee000001")
        queued: list[dict[str, Any]] = []
        notifier = directory.get_plugin().nova_notifier
        # What ML2 registers with notify_nova_on_port_status_changes on (Neutron's unit-test base turns it off;
        # its cleanup removes every listener); events are queued here instead of sent to a Nova.
        db_api.sqla_listen(models_v2.Port, "after_update", notifier.send_port_status)
        db_api.sqla_listen(models_v2.Port.status, "set", notifier.record_port_status_changed)
        self.patch(notifier.batch_notifier, "queue_event", lambda event: queued.append(event) if event else None)

        complete([p["id"] for p in ports])

        self.assertEqual(sorted(p["id"] for p in ports), sorted(e["tag"] for e in queued))
        self.assertEqual({("network-vif-plugged", "completed")}, {(e["name"], e["status"]) for e in queued})

    def test_a_port_whose_update_fails_does_not_keep_the_others_down(self) -> None:
        ports = self._bound_ports(4)
        bad = ports[0]["id"]  # first in the batch: the batch's own update fails before the others

        def veto(resource: str, event: str, trigger: Any, payload: Any) -> None:
            if payload.resource_id == bad:
                raise RuntimeError("refused by a BEFORE_UPDATE subscriber")

        registry.subscribe(veto, resources.PORT, events.BEFORE_UPDATE)
        done = complete([p["id"] for p in ports])

        self.assertEqual((bad,), done.failed)
        self.assertEqual({p["id"] for p in ports[1:]}, set(done.updated))
        self.assertEqual(["DOWN", "ACTIVE", "ACTIVE", "ACTIVE"], [self._status(p) for p in ports])
        self.assertEqual(sorted(p["id"] for p in ports[1:]), sorted(u[0] for u in self.updates))

    def test_a_port_another_entity_still_blocks_stays_down_until_that_one_completes(self) -> None:
        ports = self._bound_ports(2)
        held = ports[0]["id"]
        provisioning_blocks.add_provisioning_component(n_context.get_admin_context(), held, resources.PORT, "dhcp")

        done = complete([p["id"] for p in ports])

        self.assertEqual((held,), done.untouched)
        self.assertEqual((ports[1]["id"],), done.updated)
        self.assertEqual(["DOWN", "ACTIVE"], [self._status(p) for p in ports])
        provisioning_blocks.provisioning_complete(n_context.get_admin_context(), held, resources.PORT, "dhcp")
        self.assertEqual("ACTIVE", self._status(ports[0]))  # Converge's block was gone already

    def test_a_port_administratively_down_is_left_to_neutrons_per_port_path(self) -> None:
        ports = self._bound_ports(2)
        self._update("ports", ports[0]["id"], {"port": {"admin_state_up": False}})
        self.updates.clear()

        done = complete([p["id"] for p in ports])

        self.assertEqual(((ports[0]["id"],), (ports[1]["id"],)), (done.per_port, done.updated))
        self.assertEqual(["DOWN", "ACTIVE"], [self._status(p) for p in ports])  # what ML2 decides

    def test_with_another_provisioning_complete_listener_every_port_takes_the_per_port_path(self) -> None:
        ports = self._bound_ports(3)
        heard: list[str] = []

        def listener(resource: str, event: str, trigger: Any, payload: Any) -> None:
            heard.append(payload.resource_id)

        registry.subscribe(listener, resources.PORT, provisioning_blocks.PROVISIONING_COMPLETE)
        done = complete([p["id"] for p in ports])

        self.assertEqual(tuple(p["id"] for p in ports), done.per_port)
        self.assertEqual([p["id"] for p in ports], heard)
        self.assertEqual(["ACTIVE"] * 3, [self._status(p) for p in ports])

    def test_ml2s_handler_is_the_one_provisioning_complete_listener_here(self) -> None:
        """What lets :func:`complete` do ML2's work for a batch: were another listener added by Neutron,
        every port would silently take the slow per-port path; this test would say so."""
        self.assertTrue(port_status._ml2_alone(directory.get_plugin()))

    def test_a_burst_reported_up_through_the_listener_all_turns_active(self) -> None:
        ports = self._bound_ports(12)
        backend = MemoryBackend()
        listener = port_status.PortStatusListener(backend, resync_interval=3600, max_batch=5)
        listener.start()
        try:
            for port in ports:
                doc = ObjectDoc(Kind.PORT, ObjectId(port["id"]), {"network_id": port["network_id"]}, 1)
                backend.drift(port["project_id"], Kind.PORT, port["id"], doc)  # as the sync worker pushed it
            for port in ports:
                backend.set_port_status(port["id"], port_status.PortStatus.UP)
            self.assertTrue(listener.wait_idle())
        finally:
            listener.stop()
        self.assertEqual(["ACTIVE"] * 12, [self._status(p) for p in ports])
        self.assertEqual(sorted(p["id"] for p in ports), sorted(u[0] for u in self.updates))

