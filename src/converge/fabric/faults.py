"""Fault injection: the failures the sync engine must survive, switched on through ``/v1/admin/*``.

Why: the engine's retries, fencing and repair are only proven against a controller that really is slow,
failing, hung, unreachable, or loses and garbles state. Two halves live here: :class:`Faults`, consulted by
``app.py``'s middleware before every ``/v1`` call but the admin API (hang, latency, then error rate, in
that order, all before the handler runs so an injected error never applies anything), and :class:`Admin`,
the admin handlers. They exist only when ``serve.py`` is started with ``--faults``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import re
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from converge.core.ids import InvalidId, RootId, root_id
from converge.fabric import drift
from converge.fabric.errors import ErrorCode, FabricError, bad_json
from converge.fabric.events import Broadcaster
from converge.fabric.httpio import expect_object, json_response, read_json
from converge.fabric.operations import Operation, Put
from converge.fabric.state import Store
from converge.fabric.validate import Checks

log = logging.getLogger(__name__)

MAX_LATENCY_MS = 600_000
MAX_REFUSE_SECONDS = 3600


class Listener(Protocol):
    """The listening socket, which ``refuse`` closes and opens again on the same port."""

    async def close(self) -> None: ...

    async def open(self) -> None: ...


@dataclass(frozen=True)
class FaultSettings:
    latency_ms: int = 0
    error_rate: float = 0.0
    error_status: int = 503
    hang: bool = False
    reject_name_pattern: str | None = None
    lose_puts: int = 0  # acknowledge this many more puts without applying them (a lying controller)

    def to_json(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "error_rate": self.error_rate,
                "error_status": self.error_status, "hang": self.hang,
                "reject_name_pattern": self.reject_name_pattern, "lose_puts": self.lose_puts}


class Faults:
    """The current faults; :meth:`before` applies them to one call."""

    def __init__(self, *, max_mtu: int, rng: random.Random | None = None) -> None:
        self.settings = FaultSettings()
        self.max_mtu = max_mtu
        self._checks = Checks(max_mtu=max_mtu)
        self._rng = rng or random.Random()
        self._released = asyncio.Event()
        self._released.set()

    def checks(self) -> Checks:
        return self._checks

    def merge(self, body: dict[str, Any]) -> None:
        """Validate every given field first, then apply them all: a bad PUT changes nothing."""
        changes: dict[str, Any] = {}
        for name, value in body.items():
            if name == "latency_ms":
                changes[name] = _integer(name, value, 0, MAX_LATENCY_MS)
            elif name == "error_rate":
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                    raise bad_json("error_rate must be a number from 0 to 1")
                changes[name] = float(value)
            elif name == "error_status":
                if isinstance(value, bool) or value not in (500, 503):
                    raise bad_json("error_status must be 500 or 503")
                changes[name] = int(value)
            elif name == "hang":
                if not isinstance(value, bool):
                    raise bad_json("hang must be true or false")
                changes[name] = value
            elif name == "lose_puts":
                changes[name] = _integer(name, value, 0, 1_000_000)
            elif name == "reject_name_pattern":
                if value is not None and not isinstance(value, str):
                    raise bad_json("reject_name_pattern must be a regular expression or null")
                changes[name] = value
            else:
                raise bad_json(f"unknown fault {name!r}; known: {sorted(self.settings.to_json())}")
        new = dataclasses.replace(self.settings, **changes)
        try:
            pattern = None if new.reject_name_pattern is None else re.compile(new.reject_name_pattern)
        except re.error as exc:
            raise bad_json(f"reject_name_pattern is not a regular expression: {exc}") from None
        self.settings = new
        self._checks = Checks(max_mtu=self.max_mtu, reject_name=pattern)
        if new.hang:
            self._released.clear()
        else:
            self._released.set()

    def lose(self, operations: list[Operation]) -> tuple[list[Operation], int]:
        """Silently drop the batch's last put while ``lose_puts`` lasts (the last: it is a leaf, so the rest
        still applies); the answer then claims it applied and carries the true, unexpected ETag."""
        if self.settings.lose_puts <= 0:
            return operations, 0
        for i in range(len(operations) - 1, -1, -1):
            if isinstance(operations[i], Put):
                self.settings = dataclasses.replace(self.settings, lose_puts=self.settings.lose_puts - 1)
                log.warning("fault: losing put %s/%s", *operations[i].key)
                return operations[:i] + operations[i + 1:], 1
        return operations, 0

    async def before(self) -> None:
        """Hold, delay or fail one call as the current faults say; return to let it through."""
        await self._released.wait()
        if self.settings.latency_ms:
            await asyncio.sleep(self.settings.latency_ms / 1000)
        if self.settings.error_rate and self._rng.random() < self.settings.error_rate:
            raise FabricError(ErrorCode.INJECTED_FAULT, "injected fault (error_rate)",
                              status=self.settings.error_status)


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_json(f"{name} must be an integer from {low} to {high}")
    return value


class Admin:
    """The ``/v1/admin/*`` handlers."""

    def __init__(self, *, faults: Faults, store: Store, broadcaster: Broadcaster, listener: Listener) -> None:
        self.faults = faults
        self.store = store
        self.broadcaster = broadcaster
        self.listener = listener
        self._reopen: asyncio.Task[None] | None = None
        self._refuse_until = 0.0

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/admin/faults", self.get_faults),
            web.put("/v1/admin/faults", self.put_faults),
            web.post("/v1/admin/refuse", self.refuse),
            web.post("/v1/admin/wipe", self.wipe),
            web.post("/v1/admin/drop", self.drop),
            web.post("/v1/admin/corrupt", self.corrupt),
        ]

    async def get_faults(self, request: web.Request) -> web.Response:
        return json_response(self.faults.settings.to_json())

    async def put_faults(self, request: web.Request) -> web.Response:
        self.faults.merge(expect_object(await read_json(request), "the body"))
        log.warning("faults now %s", self.faults.settings.to_json())
        return json_response(self.faults.settings.to_json())

    async def refuse(self, request: web.Request) -> web.Response:
        body = expect_object(await read_json(request), "the body")
        seconds = body.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) \
                or not 0 < seconds <= MAX_REFUSE_SECONDS:
            raise bad_json(f"seconds must be a number above 0 and at most {MAX_REFUSE_SECONDS}")
        loop = asyncio.get_running_loop()
        self._refuse_until = max(self._refuse_until, loop.time() + seconds)
        if self._reopen is None or self._reopen.done():
            log.warning("refusing connections for %s s", seconds)
            # The connection carrying this request is only marked to close: this answer still goes out.
            await self.listener.close()
            self.broadcaster.close_all()
            self._reopen = asyncio.create_task(self._listen_again())
        return json_response({"seconds": seconds})

    async def _listen_again(self) -> None:
        loop = asyncio.get_running_loop()
        while (remaining := self._refuse_until - loop.time()) > 0:
            await asyncio.sleep(remaining)
        while True:
            try:
                await self.listener.open()
            except OSError as exc:
                log.error("cannot listen again yet (%s); retrying", exc)
                await asyncio.sleep(0.2)
            else:
                log.warning("listening again")
                return

    def cancel(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()

    async def wipe(self, request: web.Request) -> web.Response:
        removed = drift.wipe(self.store)
        log.warning("wiped %d objects", removed)
        return json_response({"removed": removed})

    async def drop(self, request: web.Request) -> web.Response:
        count, root = await self._count_and_root(request)
        touched = drift.drop(self.store, count, root=root)
        log.warning("dropped %d objects", len(touched))
        return json_response({"objects": drift.describe(touched)})

    async def corrupt(self, request: web.Request) -> web.Response:
        count, root = await self._count_and_root(request)
        touched = drift.corrupt(self.store, count, root=root)
        log.warning("corrupted %d objects", len(touched))
        return json_response({"objects": drift.describe(touched)})

    async def _count_and_root(self, request: web.Request) -> tuple[int, RootId | None]:
        body = expect_object(await read_json(request), "the body")
        unknown = set(body) - {"count", "root"}
        if unknown:
            raise bad_json(f"unknown field(s) {sorted(unknown)}; expected count and optional root")
        count = _integer("count", body.get("count"), 0, 1_000_000)
        if body.get("root") is None:
            return count, None
        try:
            return count, root_id(body["root"])
        except InvalidId as exc:
            raise FabricError(ErrorCode.INVALID_ID, f"root: {exc}") from None
