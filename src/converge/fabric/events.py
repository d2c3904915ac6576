"""Server-Sent Events: the ``GET /v1/events`` stream of port status changes, with replay.

Why a ring buffer: a sync engine that reconnects (after a network blip, a refused-connections fault or
its own restart) sends ``Last-Event-ID`` and gets the events it missed, as long as they are among the
last ``capacity`` (10,000). Event ids are the store's persistent sequence, so they keep increasing across
controller restarts. A subscriber that falls too far behind is disconnected rather than buffered without
bound; it reconnects and replays like any other. Published to by ``ports.PortUpTimer``; the stream
handler is registered by ``app.py``; ``faults.py`` and shutdown end every stream with :meth:`close_all`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from aiohttp import web

log = logging.getLogger(__name__)

KEEPALIVE = b": keepalive\n\n"


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    name: str
    data: bytes  # one line of JSON

    def encode(self) -> bytes:
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (self.seq, self.name.encode(), self.data)


class _Subscriber:
    __slots__ = ("pending", "wake", "closed")

    def __init__(self) -> None:
        self.pending: deque[Event] = deque()
        self.wake = asyncio.Event()
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class Broadcaster:
    """Fans events out to every open stream and keeps the last ``capacity`` for replay."""

    def __init__(self, *, capacity: int = 10_000, keepalive: float = 15.0) -> None:
        self.capacity = capacity
        self.keepalive = keepalive
        self._ring: deque[Event] = deque(maxlen=capacity)
        self._subscribers: set[_Subscriber] = set()

    def publish(self, event: Event) -> None:
        self._ring.append(event)
        for sub in self._subscribers:
            if len(sub.pending) >= 2 * self.capacity:
                # Too slow to keep up: drop it; its Last-Event-ID replay covers what it missed.
                sub.pending.clear()
                sub.close()
            else:
                sub.pending.append(event)
                sub.wake.set()

    def close_all(self) -> None:
        """End every open stream (shutdown, refused connections); clients reconnect and replay."""
        for sub in self._subscribers:
            sub.close()

    def replay(self, last_id: int) -> list[Event]:
        return [event for event in self._ring if event.seq > last_id]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        sub = _Subscriber()
        # Subscribe and copy the replay in one synchronous step: no event can fall between the two.
        self._subscribers.add(sub)
        last_id = _last_event_id(request.headers.get("Last-Event-ID"))
        if last_id is not None:
            sub.pending.extend(self.replay(last_id))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            await response.prepare(request)
            await response.write(b": connected\n\n")
            while True:
                if sub.pending:
                    chunk = b"".join(event.encode() for event in sub.pending)
                    sub.pending.clear()
                    await response.write(chunk)
                elif sub.closed:
                    break
                else:
                    sub.wake.clear()
                    try:
                        await asyncio.wait_for(sub.wake.wait(), self.keepalive)
                    except TimeoutError:
                        await response.write(KEEPALIVE)
        except ConnectionError:
            log.debug("event stream to %s closed by the client", request.remote)
        finally:
            self._subscribers.discard(sub)
        return response


def _last_event_id(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        seq = int(value.strip())
    except ValueError:
        return None  # a client's garbled id is treated as a fresh subscription, not an error
    return seq if seq >= 0 else None
