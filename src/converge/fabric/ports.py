"""Port status: a created port goes ``up`` a configured delay later, and so does a port bound to another
host (it goes ``down`` at once); each change is broadcast.

Why: Neutron waits for the backend to report a port up before it tells Nova the VIF is plugged, so the
sync engine consumes these events; the delay stands in for a real fabric wiring the port. Ports created
by one batch share one timer (one transaction when they go up). A port deleted before its delay never
goes up; one deleted and created again gets a fresh delay, because each timer only fires for the
creations it was armed for. Called by ``app.py`` after every applied batch and at startup for ports
still ``down`` from before a restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable

from converge.fabric.events import Broadcaster, Event
from converge.fabric.operations import Key
from converge.fabric.state import Store

log = logging.getLogger(__name__)


class PortUpTimer:
    def __init__(self, store: Store, broadcaster: Broadcaster, *, delay: float) -> None:
        self.store = store
        self.broadcaster = broadcaster
        self.delay = delay
        self._armed: dict[Key, int] = {}  # port -> the generation of the timer that will raise it
        self._generation = 0
        self._handles: set[asyncio.TimerHandle] = set()

    def created(self, keys: Iterable[Key]) -> None:
        ports = list(keys)
        if not ports:
            return
        self._generation += 1
        generation = self._generation
        for key in ports:
            self._armed[key] = generation
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            assert handle is not None
            self._handles.discard(handle)
            self._fire(generation, ports)

        handle = loop.call_later(self.delay, fire)
        self._handles.add(handle)

    def cancel(self) -> None:
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        self._armed.clear()

    def _fire(self, generation: int, ports: list[Key]) -> None:
        due = [key for key in ports if self._armed.get(key) == generation]
        for key in due:
            del self._armed[key]
        try:
            events = self.store.mark_ports_up(due)
        except Exception:
            # A timer has no caller to report to; the ports stay down and are retried at next startup.
            log.exception("could not mark %d port(s) up", len(due))
            return
        for event in events:
            data = {"root": event.root, "kind": "port", "id": event.id, "status": event.status.value}
            self.broadcaster.publish(Event(event.seq, "port_status",
                                           json.dumps(data, separators=(",", ":")).encode()))
