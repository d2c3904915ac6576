"""Reading the controller's event stream (``GET /v1/events``, Server-Sent Events) with reconnection.

Who calls it: :meth:`FabricClient.follow_ports <converge.backends.fabric.client.FabricClient.follow_ports>`
(through :func:`follow_ports`), which the Neutron side's port-status listener uses to turn ``port_status
up`` into Neutron's provisioning-complete. It reconnects with ``Last-Event-ID`` after any break (trying
each controller URL in turn), so events the controller still buffers are not missed; ``on_connect`` lets
the caller resynchronise for anything older (see converge/neutron/port_status.py).
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from converge.core.ids import ObjectId

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    data: dict[str, Any]


def parse(lines: Iterator[str]) -> Iterator[Event]:
    """SSE framing: fields until a blank line; comments (``:``) ignored; bad data skipped with a warning."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if "data" in fields:
                try:
                    yield Event(int(fields.get("id", "0")), fields.get("event", "message"), json.loads(fields["data"]))
                except ValueError:
                    log.warning("controller sent an unreadable event: %r", fields)
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value[1:] if value.startswith(" ") else value


class EventStream:
    """Follows the event stream until :meth:`stop`; ``on_event`` and ``on_connect`` run on its thread."""

    def __init__(self, urls: Sequence[str], token: str, *, on_event: Callable[[Event], None],
                 on_connect: Callable[[], None] | None = None, retry: float = 1.0,
                 verify: ssl.SSLContext | bool = True) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self.token = token
        self.on_event = on_event
        self.on_connect = on_connect
        self.retry = retry
        self.last_id: int | None = None
        self._stop = threading.Event()
        self._http = httpx.Client(verify=verify, timeout=httpx.Timeout(5.0, read=60.0),
                                  headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"})

    def stop(self) -> None:
        self._stop.set()
        self._http.close()

    def run(self) -> None:
        turn = 0
        while not self._stop.is_set():
            url = self.urls[turn % len(self.urls)]
            turn += 1
            headers = {"Last-Event-ID": str(self.last_id)} if self.last_id is not None else {}
            try:
                with self._http.stream("GET", f"{url}/v1/events", headers=headers) as answer:
                    if answer.status_code != 200:
                        raise httpx.HTTPStatusError(f"HTTP {answer.status_code}", request=answer.request,
                                                    response=answer)
                    if self.on_connect:
                        self.on_connect()
                    for event in parse(answer.iter_lines()):
                        self.last_id = event.id
                        self.on_event(event)
            except (httpx.HTTPError, RuntimeError) as err:  # RuntimeError: the client was closed by stop()
                if self._stop.is_set():
                    return
                log.info("event stream from %s broke (%s); reconnecting", url, type(err).__name__)
            except Exception:  # a handler's bug must not end the listener
                log.exception("event handler failed")
            self._stop.wait(self.retry)


def follow_ports(urls: Sequence[str], token: str, *, on_up: Callable[[ObjectId], None],
                 on_connect: Callable[[], None] | None = None, verify: ssl.SSLContext | bool = True,
                 ) -> Callable[[], None]:
    """Follow the stream on a daemon thread, calling ``on_up(port_id)`` for every ``port_status up``
    (``verify``: the client's TLS context); returns the function that stops it."""

    def event(e: Event) -> None:
        if e.type == "port_status" and e.data.get("status") == "up" and e.data.get("id") is not None:
            on_up(ObjectId(str(e.data["id"])))

    stream = EventStream(urls, token, on_event=event, on_connect=on_connect, verify=verify)
    threading.Thread(target=stream.run, name="converge-port-events", daemon=True).start()
    return stream.stop
