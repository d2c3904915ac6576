"""The worker loop: share roots with other workers through leases, drain, sweep, back off.

Embeddable (Neutron's ``get_workers()`` will run it) and run standalone by ``converge sync run``. One
thread; each step:

1. every ``lease.renew_every`` s: heartbeat, renew its leases, re-read the live workers, give back roots
   that rendezvous hashing now assigns to another worker;
2. poll the journal for roots with work (cheap when idle: one indexed statement on an empty journal, on a
   connection kept for it), plus roots due again (backoff, blocked objects) and roots that need repair;
   lease those this worker should own;
3. reconcile each held root that is due;
4. every ``sweep_interval`` s: compare every root's ETag with the acknowledged one (one paged call) and
   repair the roots that differ.

A backend that sees changes made behind the engine's back (``Backend.on_drift``) reports the root from
its own thread; the next step compares that root's ETag with the acknowledged one and repairs it at once,
without waiting for the sweep (which stays as the safety net, and the only way for a backend that cannot
see such changes).

Between steps with nothing to do it waits ``poll_interval`` or until :meth:`Worker.nudge`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection, Engine

from converge.backends.base import Backend
from converge.core.clock import Clock, SystemClock
from converge.core.errors import ConvergeError, LeaseLost, RaceLost, TemporaryError
from converge.core.ids import RootId, WorkerId
from converge.engine.backoff import Backoff
from converge.engine.membership import owner
from converge.engine.reconciler import Reconciler, Result
from converge.store import db, leases, sync
from converge.store.leases import Lease, LeaseTiming

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    poll_interval: float = 0.05
    sweep_interval: float = 5.0
    batch_size: int = 500
    journal_limit: int = 5000
    blocked_retry: float = 2.0
    lease: LeaseTiming = field(default_factory=LeaseTiming)
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    concurrency: int = 4  # roots reconciled at once: overlaps one root's HTTP wait with another's work


class Worker:
    def __init__(self, engine: Engine, backend: Backend, config: WorkerConfig | None = None, *,
                 worker_id: WorkerId | None = None, clock: Clock | None = None,
                 backoff: Backoff | None = None) -> None:
        self.engine = engine
        self.backend = backend
        self.config = config or WorkerConfig()
        self.id = worker_id or leases.new_worker_id()
        self.clock = clock or SystemClock()
        self.backoff = backoff or Backoff(self.config.backoff_base, self.config.backoff_cap)
        self.reconciler = Reconciler(engine, backend, batch_size=self.config.batch_size,
                                     journal_limit=self.config.journal_limit)
        self.held: dict[RootId, Lease] = {}
        self.due: dict[RootId, float] = {}  # backoff and "more": reconcile not before this time
        self.recheck: dict[RootId, float] = {}  # roots with blocked objects: look again at this time
        self.stalled: set[RootId] = set()  # blocked roots whose last look changed nothing
        self._parents_moved = False
        self.needs_repair: set[RootId] = set()
        self.failures: dict[RootId, int] = {}
        self.live: list[WorkerId] = [self.id]
        self._last_maintain = float("-inf")
        self._last_sweep = float("-inf")
        self._last_try: dict[RootId, float] = {}
        self._started = time.time()
        self._pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="converge-root") \
            if self.config.concurrency > 1 else None
        self._poll_conn: Connection | None = None  # see _poll
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._drifted: set[RootId] = set()  # roots the backend saw change behind our back (any thread)
        self._drifted_lock = threading.Lock()
        self.on_reconciled: Callable[[RootId], None] | None = None
        self._back = threading.Event()  # the controller answers again: retry roots waiting out a backoff
        backend.on_drift(self._drift_seen)
        backend.on_available(self._controller_back)

    # -- control -------------------------------------------------------------------------------------
    def nudge(self) -> None:
        """Wake the loop now (called in-process by whoever just committed a change)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _drift_seen(self, root: RootId) -> None:
        """The backend's drift callback: runs on a backend thread, so it only notes the root and wakes
        the loop; :meth:`_check_drift` looks at it on the loop's thread."""
        with self._drifted_lock:
            self._drifted.add(root)
        self._wake.set()

    def _controller_back(self) -> None:
        """The backend's availability callback (a backend thread): note it and wake the loop."""
        self._back.set()
        self._wake.set()

    def _retry_now(self, now: float) -> None:
        """Roots backing off because the controller was away are due at once: their delay grew while it
        was away (up to the cap), and would leave the work waiting long after it came back."""
        self._back.clear()
        waiting = [r for r in self.due if self.failures.get(r)]
        for root in waiting:
            self.due[root] = now
        if waiting:
            log.info("worker %s: the controller answers again; %d roots retry now", self.id, len(waiting))

    def run(self) -> None:
        log.info("worker %s starting", self.id)
        try:
            while not self._stop.is_set():
                try:
                    worked = self.step()
                    pause = self.config.poll_interval
                except Exception as err:  # the database (or a bug) failed a whole step: never end the loop
                    log.warning("worker %s: step failed: %s", self.id, err, exc_info=not isinstance(err, ConvergeError))
                    worked, pause = False, self.backoff.delay(3)
                if not worked:
                    self._wake.wait(pause)
                    self._wake.clear()
        finally:
            self.shutdown()

    def run_until_idle(self, timeout: float) -> bool:
        """Step until the journal is drained and nothing is due (blocked objects aside); False on timeout."""
        deadline = self.clock.monotonic() + timeout
        while self.clock.monotonic() < deadline:
            worked = self.step()
            if not worked and self.idle():
                return True
            if not worked:
                self.clock.sleep(self.config.poll_interval)
        return False

    def idle(self) -> bool:
        with self.engine.connect() as conn:
            pending = sync.pending_roots(conn, limit=1)
        waiting = set(self.recheck) - self.stalled
        with self._drifted_lock:
            drifted = bool(self._drifted)
        return not pending and not self.due and not self.needs_repair and not waiting and not drifted

    def shutdown(self) -> None:
        self._drop_poll_connection(failed=False)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        try:
            with self.engine.begin() as conn:
                leases.retire(conn, self.id)
        except Exception:  # the DB may be the reason we stop; leases then expire on their own
            log.warning("worker %s could not release its leases; they will expire", self.id)
        self.held.clear()

    # -- one step ------------------------------------------------------------------------------------
    def step(self) -> bool:
        now = self.clock.monotonic()
        try:
            if now - self._last_maintain >= self.config.lease.renew_every:
                self._maintain(now)
            pending = self._poll()
            self._check_drift()
            if self._back.is_set():
                self._retry_now(now)
        except ConvergeError as err:
            log.warning("worker %s: database: %s", self.id, err)
            return False
        wanted = set(pending) | {r for r, t in self.due.items() if t <= now} | self.needs_repair
        if self._parents_moved:
            self._parents_moved = False
            wanted |= set(self.recheck)
            self.stalled.clear()
        else:
            wanted |= {r for r, t in self.recheck.items() if t <= now}
        self._acquire([r for r in wanted if owner(r, self.live) == self.id], now)
        worked = False
        order = {root: i for i, root in enumerate(pending)}  # oldest change first; the rest after
        todo = sorted((r for r in wanted if r in self.held and self.due.get(r, 0.0) <= now),
                      key=lambda r: (order.get(r, len(order)), r))
        if self._pool is None:
            for root in todo:
                self._keep_leases()
                if root in self.held:
                    worked |= self._settle(root, self._attempt(root))
        else:
            # Keep `concurrency` roots in flight; bookkeeping stays on this thread.
            queue = iter(todo)
            running: dict[Future[Result | BaseException], RootId] = {}
            while True:
                for root in queue:
                    if root in self.held:
                        running[self._pool.submit(self._attempt, root)] = root
                    if len(running) >= self.config.concurrency:
                        break
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    worked |= self._settle(running.pop(fut), fut.result())
                self._keep_leases()
        if now - self._last_sweep >= self.config.sweep_interval:
            self._last_sweep = now
            self._sweep()
        return worked

    def _poll(self) -> list[RootId]:
        """Roots with journal rows: the query an idle worker repeats every ``poll_interval``.

        It runs on a connection of its own, kept between polls in autocommit mode, so an idle poll is one
        statement: a pool checkout would add a ping and a rollback to each. A kept connection that fails
        (the database restarted, say) is dropped and the poll tried once more on a fresh one."""
        kept = self._poll_conn is not None
        try:
            with db.translated():
                if self._poll_conn is None:
                    self._poll_conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                return sync.pending_roots(self._poll_conn)
        except Exception:
            self._drop_poll_connection(failed=True)
            if not kept:
                raise
        return self._poll()

    def _drop_poll_connection(self, *, failed: bool) -> None:
        conn, self._poll_conn = self._poll_conn, None
        if conn is None:
            return
        try:
            if failed:
                conn.invalidate()  # never hand a broken connection back to the pool
            conn.close()
        except Exception:  # closing what already failed: nothing left to do
            log.debug("worker %s: closing the poll connection failed", self.id, exc_info=True)

    def _keep_leases(self) -> None:
        """Renew on time even inside a long step."""
        if self.clock.monotonic() - self._last_maintain >= self.config.lease.renew_every:
            self._maintain(self.clock.monotonic())

    def _maintain(self, now: float) -> None:
        timing = self.config.lease
        with db.translated(), self.engine.begin() as conn:
            leases.heartbeat(conn, self.id, self._started)
            still = leases.renew_all(conn, self.id, timing.duration)
            self.live = leases.live_workers(conn, within=timing.duration) or [self.id]
            requested = sync.repair_requests(conn)
            blocked = sync.blocked_roots(conn)
        if self.id not in self.live:
            self.live = sorted([*self.live, self.id])
        for root in list(self.held):
            if root not in still or still[root] != self.held[root].epoch:
                log.warning("worker %s lost the lease on root %s", self.id, root)
                self._forget(root)
            elif owner(root, self.live) != self.id:
                with self.engine.begin() as conn:
                    leases.release(conn, self.held[root])
                log.info("worker %s hands root %s over", self.id, root)
                self._forget(root)
        for root in requested:
            if root in self.held or owner(root, self.live) == self.id:
                self.needs_repair.add(root)
        for root in blocked:  # e.g. left blocked by a worker that stopped: look at them again
            if root in self.held or owner(root, self.live) == self.id:
                self.recheck.setdefault(root, now)
        self._last_maintain = now

    def _forget(self, root: RootId) -> None:
        self.held.pop(root, None)
        self.due.pop(root, None)
        self.recheck.pop(root, None)
        self.stalled.discard(root)
        self.needs_repair.discard(root)

    def _acquire(self, roots: list[RootId], now: float) -> None:
        todo = [r for r in roots if r not in self.held
                and now - self._last_try.get(r, float("-inf")) >= self.config.lease.retry_period]
        if not todo:
            return
        try:
            with db.translated(), self.engine.begin() as conn:
                leases.ensure_roots(conn, todo)
            for root in todo:
                self._last_try[root] = now
                with db.translated(), self.engine.begin() as conn:
                    lease = leases.acquire(conn, root, self.id, self.config.lease.duration)
                    delay = sync.root_delay(conn, root) if lease else 0.0
                if lease:
                    self.held[root] = lease
                    self._last_try.pop(root, None)
                    if delay > 0:
                        self.due[root] = now + delay
        except (RaceLost, ConvergeError) as err:
            log.info("worker %s: lease race: %s", self.id, err)

    def _attempt(self, root: RootId) -> Result | BaseException:
        """Reconcile one root (runs on a pool thread); errors are returned, not raised."""
        lease = self.held.get(root)
        if lease is None:
            return LeaseLost(f"root {root} was given up before its pass started")
        try:
            with db.translated():  # deadlocks and certification failures become RaceLost
                return self.reconciler.reconcile(lease, repair=root in self.needs_repair)
        except Exception as err:
            return err

    def _settle(self, root: RootId, outcome: Result | BaseException) -> bool:
        lease = self.held.get(root)
        if lease is None:  # given up while the pass ran (lost, or handed over): its writes were fenced
            return False
        now = self.clock.monotonic()
        if isinstance(outcome, LeaseLost):
            log.warning("%s", outcome)
            self._forget(root)
            return False
        if isinstance(outcome, RaceLost):  # another writer won a row: try again soon, jittered
            self._failed(root, lease, outcome.delay or self.backoff.jitter(0.5), str(outcome))
            return False
        if isinstance(outcome, TemporaryError):
            self._failed(root, lease, outcome.delay, str(outcome))
            return False
        if isinstance(outcome, BaseException):  # a bug or a permanent error must not stop other roots
            log.error("root %s: reconcile failed", root, exc_info=outcome)
            self._failed(root, lease, None, f"{type(outcome).__name__}: {outcome}")
            return False
        result = outcome
        if result.lease is not None:  # the pass moved the lease's epoch past an older store's fence
            self.held[root] = result.lease
        self.needs_repair.discard(root)
        self.failures.pop(root, None)
        self.due.pop(root, None)
        if result.more:
            self.due[root] = now
        progressed = result.pushed > 0 or result.more or result.repaired
        if result.blocked:
            self.recheck[root] = now + self.config.blocked_retry
            if progressed:
                self.stalled.discard(root)
            else:
                self.stalled.add(root)
        else:
            self.recheck.pop(root, None)
            self.stalled.discard(root)
        if result.pushed:
            self._parents_moved = True  # what this root synced may be what another root's objects wait for
        if self.on_reconciled:
            self.on_reconciled(root)
        return progressed

    def _failed(self, root: RootId, lease: Lease, delay: float | None, message: str) -> None:
        n = self.failures.get(root, 0) + 1
        self.failures[root] = n
        wait = delay if delay is not None else self.backoff.delay(n)
        self.due[root] = self.clock.monotonic() + wait
        log.warning("root %s: attempt %d failed (%s); retry in %.1fs", root, n, message, wait)
        try:
            with db.translated(), self.engine.begin() as conn:
                sync.record_failure(conn, lease, failures=n, retry_in=wait, message=message)
        except LeaseLost:
            self._forget(root)
        except ConvergeError as err:
            log.warning("root %s: could not record the failure: %s", root, err)

    def _check_drift(self) -> None:
        """Roots the backend reported changed: those this worker holds whose ETag differs from the
        acknowledged one need repair. Runs between passes, so none of them is being reconciled."""
        with self._drifted_lock:
            roots, self._drifted = self._drifted, set()
        for root in sorted(roots):
            if root not in self.held or root in self.needs_repair:
                continue  # another worker's root (its backend tells it), or already on its way
            try:
                remote = self.backend.root_etag(root)
            except ConvergeError as err:
                log.info("root %s changed on the controller, cannot compare now (%s); the sweep will", root, err)
                continue
            try:
                with db.translated(), self.engine.connect() as conn:
                    state = sync.root_state(conn, root)
            except ConvergeError:
                with self._drifted_lock:
                    self._drifted.add(root)  # the caller logs it; look again next step
                raise
            if state is None or state.acked != remote:
                log.warning("root %s changed on the controller behind our back; repairing", root)
                self.needs_repair.add(root)

    def _sweep(self) -> None:
        """Compare every held root's acknowledged ETag with the controller's; mark differing ones for repair."""
        try:
            remote = {s.root: s.etag for s in self.backend.roots()}
        except ConvergeError as err:
            log.info("sweep skipped: %s", err)
            return
        with self.engine.connect() as conn:
            local = sync.all_acked(conn)
        unknown = [r for r in remote if r not in local]
        if unknown:
            log.warning("controller holds %d roots unknown to the store; they will be emptied", len(unknown))
            with self.engine.begin() as conn:
                leases.ensure_roots(conn, unknown)
        for root in set(remote) | set(local):
            mine = root in self.held or owner(root, self.live) == self.id
            if mine and remote.get(root, 0) != local.get(root, 0) and root not in self.needs_repair:
                log.warning("sweep: root %s differs on the controller; repairing", root)
                self.needs_repair.add(root)
