"""``OvnBackend``: the engine's Backend over OVN's Northbound DB (ovsdbapp's IDL replica).

The edge where OVSDB's failures become the project's errors (core/errors.py): not connected, a timeout
(whose outcome is unknown: the transaction may still commit later, which the marker fences) or a server
error that names no operation → ControllerUnavailable; an error that is about the rows written
(constraint or referential integrity violation) → ObjectRejected with no index, so the engine narrows
the batch down to the operation; the fence → PreconditionFailed.

The connection is a list of remotes (``tcp:a:6641,tcp:b:6641``: a clustered NB fails over; the IDL
reconnects with backoff). It is started in the background, so a worker starts while NB is down and its
calls fail fast with ControllerUnavailable until the replica is loaded. Fingerprints are read from the
replica (``replica.py``) without a round trip; each batch is one transaction (``apply.py``), after which
the call waits until the replica holds the transaction (the marker's transaction id) and returns the
root's fingerprint from it.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ovs.db import idl as ovs_idl
from ovsdbapp import exceptions as ovsdbapp_exceptions
from ovsdbapp.backend.ovs_idl import connection as ovsdbapp_connection
from ovsdbapp.backend.ovs_idl import idlutils
from ovsdbapp.backend.ovs_idl import transaction as ovsdbapp_transaction

from converge.backends.base import (
    BucketEntry,
    Comparison,
    EndpointHealth,
    Operation,
    PortStatus,
    RootSummary,
    Traffic,
    compare_held,
    held_entries,
)
from converge.backends.ovn import translate
from converge.backends.ovn.apply import ApplyBatch, RestoreShared
from converge.backends.ovn.replica import MARKER_TABLE, TXN, NbIdl
from converge.core.canonical import ObjectDoc
from converge.core.errors import ConfigurationError, ControllerUnavailable, ObjectRejected
from converge.core.ids import ObjectId, RootId
from converge.core.kinds import Kind

log = logging.getLogger(__name__)

SCHEMA = "OVN_Northbound"
LOCAL_SCHEMA = Path("/usr/share/ovn/ovn-nb.ovsschema")
REFUSALS = ("constraint violation", "referential integrity", "syntax error", "domain error")


class _Api:
    """What ovsdbapp's Transaction needs of an API object: the IDL."""

    def __init__(self, idl: Any) -> None:
        self.idl = idl


class OvnBackend:
    def __init__(self, connections: Sequence[str], *, timeout: float = 10.0, writer: str = "converge",
                 gateway_chassis: Sequence[str] = (), start_timeout: float = 5.0) -> None:
        remotes = [c.strip() for c in connections if c and c.strip()]
        if not remotes:
            raise ConfigurationError("no OVN NB connection configured ([converge] ovn_nb_connection)")
        for remote in remotes:
            if not remote.startswith(("tcp:", "ssl:", "unix:")):
                raise ConfigurationError(f"OVN NB connection {remote!r} must look like tcp:IP:PORT, ssl:IP:PORT "
                                         f"or unix:PATH")
        self.remote = ",".join(remotes)
        self.timeout = timeout
        self.writer = writer
        self.settings = translate.Settings(gateway_chassis=tuple(gateway_chassis))
        self.traffic = Traffic()
        self.last_error: str | None = None
        self._drift: list[Callable[[RootId], None]] = []
        self._available: list[Callable[[], None]] = []
        self._was_connected = False
        helper, self.last_error = _schema_helper(self.remote)
        self.idl = NbIdl(self.remote, helper)
        self.idl.after_run = self._after_run
        self.replica = self.idl.replica
        self._api = _Api(self.idl)
        # python-ovs backs off up to 8 s between reconnection attempts: a NB back from an outage would sit
        # unused for that long. 1-2 s is plenty for a handful of workers.
        self.idl._session.reconnect.set_backoff(1000, 2000)
        self._connection = ovsdbapp_connection.Connection(self.idl, timeout)
        self._closed = threading.Event()
        self._started = threading.Event()
        self._guard_shared = threading.Event()  # set on the IDL thread; a thread of its own commits
        threading.Thread(target=self._guard_shared_rows, name="converge-ovn-shared", daemon=True).start()
        self._starter = threading.Thread(target=self._start, name="converge-ovn-connect", daemon=True)
        self._starter.start()
        self._started.wait(start_timeout)

    # -- connection ----------------------------------------------------------------------------------
    def _start(self) -> None:
        while not self._closed.is_set():
            try:
                self._connection.start()
                self.last_error = None
                self._started.set()
                log.info("OVN NB %s: replica loaded", self.remote)
                return
            except Exception as err:  # NB down or unreachable: keep trying until closed
                if not isinstance(err, ovsdbapp_exceptions.TimeoutException) or self.last_error is None:
                    self.last_error = describe(err)
                log.info("OVN NB %s not reachable yet (%s); retrying", self.remote, self.last_error)
                self._closed.wait(1.0)

    def connected(self) -> bool:
        return self._started.is_set() and bool(self.idl._session.is_connected()) and \
            self.idl.state == self.idl.IDL_S_MONITORING

    def _ready(self) -> None:
        if not self.connected():
            reason = f" ({self.last_error})" if self.last_error else ""
            raise ControllerUnavailable(f"OVN NB {self.remote} is not connected{reason}")

    def _after_run(self) -> None:
        now = self.connected()
        if now and not self._was_connected:
            for back in list(self._available):
                _safely(back)
        self._was_connected = now
        if self.replica.shared_touched and now:
            self.replica.shared_touched = False
            self._guard_shared.set()
        moved = self.replica.take_moved()
        for root in moved:
            for callback in self._drift:
                try:
                    callback(root)
                except Exception:  # a callback's bug must not stop the replica
                    log.exception("drift callback failed")

    def _guard_shared_rows(self) -> None:
        """Restore ``neutron_pg_drop``'s drop ACLs whenever the group or one of them changed (RestoreShared).
        A transaction of its own, from a thread of its own: the IDL thread that noticed cannot wait on it."""
        while not self._closed.is_set():
            if not self._guard_shared.wait(1.0):
                continue
            self._guard_shared.clear()
            command = RestoreShared(self._api, replica=self.replica)
            txn = ovsdbapp_transaction.Transaction(self._api, self._connection, timeout=self.timeout,
                                                   check_error=True, log_errors=False)
            txn.add(command)
            try:
                txn.commit()
            except Exception as err:  # NB away or busy: the next change of the group tries again
                log.info("OVN NB %s: could not check the drop group's ACLs (%s)", self.remote, describe(err))
                continue
            if command.restored:
                log.warning("OVN NB %s: %d drop ACLs of %s were missing or changed; restored", self.remote,
                            command.restored, "neutron_pg_drop")

    # -- Backend: writes -----------------------------------------------------------------------------
    def apply(self, root: RootId, *, if_match: int, operations: Sequence[Operation], epoch: int = 0) -> int:
        self._ready()
        command = ApplyBatch(self._api, replica=self.replica, root=root, if_match=if_match, epoch=epoch,
                             operations=operations, settings=self.settings)
        txn = ovsdbapp_transaction.Transaction(self._api, self._connection, timeout=self.timeout,
                                               check_error=True, log_errors=False)
        txn.add(command)
        try:
            try:
                txn.commit()
            except ovsdbapp_exceptions.TimeoutException:
                raise ControllerUnavailable(
                    f"OVN NB {self.remote}: no answer in {self.timeout:.0f} s; the outcome is unknown (a late "
                    f"commit is fenced by root {root}'s marker)") from None
            except RuntimeError as err:
                text = str(err)
                if any(r in text for r in REFUSALS):
                    raise ObjectRejected(f"OVN NB refused the transaction: {text}", index=None, status=409) from None
                raise ControllerUnavailable(f"OVN NB {self.remote}: {text}") from None
            finally:
                self.traffic.add("batch", 0, 0)
            return self._landed(root, command.txn_id, command.expected)
        finally:
            with self.replica.lock:
                self.replica.inflight.discard(root)

    def _landed(self, root: RootId, txn_id: str, expected: int) -> int:
        """Wait until the replica holds our transaction, then read the root's fingerprint from it."""
        deadline = time.monotonic() + self.timeout
        with self.replica.changed:
            while True:
                marker_uuid = self.replica.markers.get(root)
                marker = self.idl.tables[MARKER_TABLE].rows.get(marker_uuid) if marker_uuid else None
                if marker is not None and marker.external_ids.get(TXN) == txn_id and not self.replica.dirty:
                    return self.replica.sums.get(root, 0)
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("root %s: transaction committed but not seen in the replica in time", root)
                    return expected
                self.replica.changed.wait(left)

    # -- Backend: reads ------------------------------------------------------------------------------
    def root_etag(self, root: RootId) -> int:
        self._ready()
        return self.replica.fingerprint(root)

    def roots(self) -> Iterator[RootSummary]:
        self._ready()
        for root, etag, count in self.replica.summaries():
            if count:
                yield RootSummary(root, etag, count)

    def compare_groups(self, root: RootId, believed: Mapping[str, int], *, width: int,
                       listed: int) -> Comparison:
        self._ready()
        with self.replica.lock:
            etag, digests = self.replica.fingerprint(root), self.replica.digests(root)
        return compare_held(etag, digests, believed, width=width, listed=listed)

    def entries(self, root: RootId, buckets: Sequence[int]) -> list[BucketEntry]:
        self._ready()
        return held_entries(self.replica.digests(root), buckets)

    def objects(self, root: RootId) -> Iterator[ObjectDoc]:
        """Each object of the root with the normal form of its NB rows as attributes (for reports)."""
        self._ready()
        with self.replica.lock:
            keys = sorted(self.replica.digests(root))
            found = [(k, self.replica.normal_forms(k)) for k in keys]
        for (kind, oid), forms in found:
            yield ObjectDoc(Kind(kind), ObjectId(oid), {"ovn_rows": forms})

    def health(self) -> list[EndpointHealth]:
        state = "up" if self.connected() else "down"
        return [EndpointHealth(self.remote, state, 0 if state == "up" else 1,
                               None if state == "up" else self.last_error or "not connected")]

    # -- Backend: ports and drift --------------------------------------------------------------------
    def port_status(self, root: RootId, port_id: ObjectId) -> PortStatus | None:
        self._ready()
        with self.replica.lock:
            row = self.replica.rows(("port", port_id)).get("lsp")
            if row is None:
                return None
            return PortStatus.UP if row.up == [True] else PortStatus.DOWN

    def follow_ports(self, *, on_up: Callable[[ObjectId], None],
                     on_connect: Callable[[], None] | None = None) -> Callable[[], None]:
        stop = threading.Event()

        def follow() -> None:
            was = False
            while not stop.is_set() and not self._closed.is_set():
                now = self.connected()
                if now and not was and on_connect is not None:
                    _safely(on_connect)
                was = now
                for port in self.replica.take_ports_up():
                    _safely(functools.partial(on_up, ObjectId(port)))
                with self.replica.changed:
                    self.replica.changed.wait(0.5)

        thread = threading.Thread(target=follow, name="converge-ovn-ports", daemon=True)
        thread.start()
        return stop.set

    def on_drift(self, callback: Callable[[RootId], None]) -> None:
        self._drift.append(callback)

    def on_available(self, callback: Callable[[], None]) -> None:
        self._available.append(callback)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the connection's thread, waiting at most ``timeout`` seconds: ovsdbapp's own ``stop()`` puts
        its stop request in the transaction queue without a timeout, and blocked for ever when that queue
        was full (seen under load in a test whose NB traffic a relay had held)."""
        self._closed.set()
        conn = self._connection
        try:
            if not conn.is_running:
                return
            conn.is_running = False
            try:
                conn.txns.put(None, timeout=timeout)
            except queue.Full:
                log.warning("OVN NB connection: its thread did not take the stop request within %.0f s; it "
                            "ends with the process", timeout)
                return
            if conn.thread is not None:
                conn.thread.join(timeout)
        except Exception:  # stopping what never started
            log.debug("OVN NB connection stop failed", exc_info=True)


def describe(err: BaseException) -> str:
    """``Type: message``; some ovsdbapp exceptions fail in ``str()`` when built without arguments."""
    try:
        text = str(err)
    except Exception:  # ovsdbapp's TimeoutException() without its format arguments
        text = ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _safely(action: Callable[[], None]) -> None:
    try:
        action()
    except Exception:  # a handler's bug must not end the listener
        log.exception("port status handler failed")


def _schema_helper(remote: str) -> tuple[ovs_idl.SchemaHelper, str | None]:
    """The NB schema from the server when it answers, else from the local OVN package (same release),
    and why the server did not answer. ovsdbapp logs each refused remote at ERROR: that is this
    backend's report to make (``health()``), once, not a log line per attempt."""
    fetch_log = logging.getLogger(idlutils.__name__)
    level = fetch_log.level
    fetch_log.setLevel(logging.CRITICAL)
    try:
        helper, error = idlutils.get_schema_helper(remote, SCHEMA), None
    except Exception as err:  # NB down at start-up: the package's schema file serves until it is back
        if not LOCAL_SCHEMA.exists():
            raise ControllerUnavailable(f"OVN NB {remote}: cannot read its schema ({err}) and "
                                        f"{LOCAL_SCHEMA} is absent") from None
        helper, error = ovs_idl.SchemaHelper(location=str(LOCAL_SCHEMA)), f"cannot reach {remote}"
    finally:
        fetch_log.setLevel(level)
    helper.register_all()
    return helper, error
