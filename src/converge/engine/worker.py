"""The worker loop: share roots with other workers through leases, drain, sweep, settle outcomes.

Embeddable (Neutron's ``get_workers()`` runs it) and run standalone by ``converge sync run``. The
scheduling — which root is ready when, backoff, requeue — is the :class:`~converge.engine.queue.RootQueue`'s;
this loop feeds it and settles each pass's outcome into it. One thread (passes run on a small pool);
each step:

1. maintenance, every ``lease.renew_every`` s and at the moment another worker's lease expires:
   heartbeat, renew its leases (valid for writing until ``renew_deadline`` after the renewal began),
   re-read the live workers, give back roots rendezvous hashing now assigns to another worker, take the
   free or expired roots it assigns to this one; between maintenances, every ``membership_interval`` s,
   a look at who is alive (a worker that stopped cleanly is gone at once);
2. poll the journal for roots with work (cheap when idle: one indexed statement on an empty journal, on a
   connection kept for it) and queue the held ones (leasing those this worker should own);
3. reconcile the ready roots of the queue, ``concurrency`` at a time, renewing leases on time meanwhile;
4. every ``sweep_interval`` s: compare every root's ETag with the acknowledged one (one paged call) and
   repair the roots that differ; parents in roots that differ are not pushed to (their children wait).

A backend that sees changes made behind the engine's back (``Backend.on_drift``) reports the root from
its own thread; the next step compares that root's ETag with the acknowledged one and repairs it at once,
without waiting for the sweep (which stays as the safety net, and the only way for a backend that cannot
see such changes).

Between steps with nothing to do it waits ``poll_interval`` or until :meth:`Worker.nudge`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.engine import Connection, Engine

from converge.backends.base import Backend, EndpointHealth
from converge.core.clock import Clock, SystemClock
from converge.core.errors import ConfigurationError, ConvergeError, LeaseLost, RaceLost, TemporaryError
from converge.core.ids import RootId, WorkerId
from converge.engine.backoff import Backoff
from converge.engine.membership import owner
from converge.engine.metrics import Totals, WorkerMetrics
from converge.engine.queue import RootQueue
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
    membership_interval: float = 0.5  # how often to look who is alive between maintenances
    summary_interval: float = 60.0  # how often to log one line of what was done (INFO)

# After another worker's lease expires, look this long later (the database's clock and ours differ by
# the statement's latency).
_EXPIRY_MARGIN = 0.05
# A dead worker's heartbeat row stays this many lease durations (``converge status`` shows it), then goes.
_FORGET_DEAD = 20
# A failure logged in the same words is logged again (above DEBUG) after this many seconds.
_REPEAT_AFTER = 300.0



class Worker:
    def __init__(self, engine: Engine, backend: Backend, config: WorkerConfig | None = None, *,
                 worker_id: WorkerId | None = None, clock: Clock | None = None,
                 backoff: Backoff | None = None, metrics: WorkerMetrics | None = None) -> None:
        self.engine = engine
        db.bound_waits(engine)
        self.backend = backend
        self.config = config or WorkerConfig()
        self.id = worker_id or leases.new_worker_id()
        self.clock = clock or SystemClock()
        self.backoff = backoff or Backoff(self.config.backoff_base, self.config.backoff_cap)
        self.queue = RootQueue(self.clock, self.backoff)
        self.metrics = metrics or WorkerMetrics()
        self.metrics.watch(engine, self)  # gauges read when scraped (nothing runs until then)
        self.reconciler = Reconciler(engine, backend, batch_size=self.config.batch_size,
                                     journal_limit=self.config.journal_limit, clock=self.clock,
                                     metrics=self.metrics)
        self.held: dict[RootId, Lease] = {}
        self.valid_until: dict[RootId, float] = {}  # local time after which a held lease is not written with
        self.blocked: set[RootId] = set()  # roots whose last pass left objects waiting for parents
        self.stalled: set[RootId] = set()  # blocked roots whose last look changed nothing
        self.needs_repair: set[RootId] = set()
        self.suspect: set[RootId] = set()  # roots (any worker's) the last sweep found differing
        self._parents_moved = False
        self.live: list[WorkerId] = [self.id]
        self._next_maintain = float("-inf")
        self._next_membership = float("-inf")
        self._last_sweep = float("-inf")
        self._next_summary = self.clock.monotonic() + self.config.summary_interval
        self._summarized = self.metrics.totals()
        self._last_try: dict[RootId, float] = {}
        self._said: dict[str, float] = {}  # failure messages logged, and when (see _say_failure)
        self._store_failures = 0  # steps in a row the database failed
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

    @property
    def failures(self) -> dict[RootId, int]:
        """Roots whose last passes failed, with how many in a row."""
        return self.queue.failing()

    # What metrics read when scraped (another thread: plain reads of sizes).
    @property
    def held_count(self) -> int:
        return len(self.held)

    @property
    def backing_off(self) -> int:
        return len(self.queue.failing())

    def health(self) -> list[EndpointHealth]:
        return self.backend.health()

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

    def run(self) -> None:
        log.info("worker %s starting", self.id)
        try:
            while not self._stop.is_set():
                try:
                    with db.translated():  # a database error anywhere in a step is one line, not a traceback
                        worked = self.step()
                    pause = self._pause()
                except Exception as err:  # the database (or a bug) failed a whole step: never end the loop
                    bug = not isinstance(err, ConvergeError)
                    log.log(logging.WARNING if self._news(str(err)) else logging.DEBUG, "worker %s: step failed: %s",
                            self.id, err, exc_info=bug)
                    worked, pause = False, self.backoff.delay(3)
                if not worked:
                    self._wake.wait(pause)
                    self._wake.clear()
        finally:
            self.shutdown()

    def _pause(self) -> float:
        """How long an idle loop may wait: the poll interval, or less if maintenance or a root is due."""
        if self._store_failures:  # the database is away: wait a growing while (capped), not a poll interval
            return min(self.backoff.delay(self._store_failures), 2.0)
        now = self.clock.monotonic()
        pause = min(self.config.poll_interval, max(0.0, self._next_maintain - now))
        ready = self.queue.next_ready()
        return pause if ready is None else min(pause, ready)

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
        with db.translated(), self.engine.connect() as conn:
            pending = sync.pending_roots(conn, limit=1)
        with self._drifted_lock:
            drifted = bool(self._drifted)
        return not pending and not drifted and not self.needs_repair and self.queue.queued() <= self.stalled

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
        else:
            if self.held:
                log.info("worker %s stopped and released %d roots", self.id, len(self.held))
        self.held.clear()

    # -- one step ------------------------------------------------------------------------------------
    def step(self) -> bool:
        now = self.clock.monotonic()
        try:
            if now >= self._next_maintain:
                self._maintain(now)
            elif now >= self._next_membership:
                self._check_membership(now)
            pending = self._poll()
            self._check_drift()
            if self._back.is_set():
                self._retry_now()
        except ConvergeError as err:
            # Said once (then DEBUG), and looked at again after a growing pause, not every poll interval.
            self._store_failures += 1
            log.log(logging.WARNING if self._news(str(err)) else logging.DEBUG, "worker %s: database: %s",
                    self.id, err)
            return False
        if self._store_failures:
            log.info("worker %s: the database answers again", self.id)
            self._store_failures = 0
        self._acquire([r for r in dict.fromkeys([*pending, *self.needs_repair])
                       if r not in self.held and owner(r, self.live) == self.id], now)
        for i, root in enumerate(pending):  # oldest change first; the rest after
            if root in self.held:
                self.queue.add(root, priority=i)
        for root in self.needs_repair & self.held.keys():
            self.queue.add(root)
        if self._parents_moved:
            self._parents_moved = False
            for root in self.blocked & self.held.keys():
                self.queue.add(root)
            self.stalled.clear()
        worked = self._run(self.queue.get())
        if now - self._last_sweep >= self.config.sweep_interval:
            self._last_sweep = now
            self._sweep()
        if now >= self._next_summary:
            self._summarize(now)
        return worked

    def _summarize(self, now: float) -> None:
        """One INFO line every ``summary_interval``: what this worker did since the last one."""
        self._next_summary = now + self.config.summary_interval
        was, self._summarized = self._summarized, self.metrics.totals()
        d = Totals(**{k: getattr(self._summarized, k) - getattr(was, k) for k in vars(was)})
        if not (d.batches or d.repairs or d.lost):
            return  # nothing happened: say nothing
        log.info("worker %s: %d roots held; last %.0f s: %d operations applied in %d batches, %d refused, "
                 "%d repairs (%d objects fixed), %d leases lost; %d roots backing off", self.id, len(self.held),
                 self.config.summary_interval, d.applied, d.batches, d.refused, d.repairs, d.fixed, d.lost,
                 self.backing_off)

    def _run(self, todo: list[RootId]) -> bool:
        """Reconcile ``todo`` (roots the queue handed out), ``concurrency`` at a time; settle each. Whatever
        goes wrong, every root handed out ends its pass in the queue (a root left active would never be
        handed out again while this worker renews its lease)."""
        worked = False
        left = list(reversed(todo))
        running: dict[Future[Result | BaseException], RootId] = {}
        try:
            while left or running:
                while left and (len(running) < self.config.concurrency or self._pool is None):
                    root = left.pop()
                    if self._pool is None:
                        self._keep_leases()
                        worked |= self._settle(root, self._attempt(root))
                    else:
                        running[self._pool.submit(self._attempt, root)] = root
                if not running:
                    continue
                # Wake for maintenance too: leases are renewed on time however long a pass takes.
                timeout = max(0.0, self._next_maintain - self.clock.monotonic())
                done, _ = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
                for fut in done:
                    worked |= self._settle(running.pop(fut), fut.result())
                self._keep_leases()
        finally:
            for fut, root in running.items():
                fut.result()  # passes in flight end first: one pass per root at a time
                self.queue.done(root)
                self.queue.add(root)
            for root in left:
                self.queue.done(root)
                self.queue.add(root)
        return worked

    def _poll(self) -> list[RootId]:
        """Roots with journal rows: the query an idle worker repeats every ``poll_interval``."""
        return self._on_poll_connection(sync.pending_roots)

    def _on_poll_connection(self, query: Callable[[Connection], list[_T]]) -> list[_T]:
        """Run a read on a connection of its own, kept between polls in autocommit mode, so an idle poll is
        one statement: a pool checkout would add a ping and a rollback to each. A kept connection that
        fails (the database restarted, say) is dropped and the read tried once more on a fresh one."""
        kept = self._poll_conn is not None
        try:
            with db.translated():
                if self._poll_conn is None:
                    self._poll_conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                return query(self._poll_conn)
        except Exception:
            self._drop_poll_connection(failed=True)
            if not kept:
                raise
        return self._on_poll_connection(query)

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

    # -- leases --------------------------------------------------------------------------------------
    def _keep_leases(self) -> None:
        """Renew on time even inside a long step; a database that fails it is logged, not raised: the
        passes still running must be settled, and past ``renew_deadline`` they stop writing anyway."""
        now = self.clock.monotonic()
        if now < self._next_maintain:
            return
        try:
            self._maintain(now)
        except ConvergeError as err:
            log.warning("worker %s: could not renew leases: %s", self.id, err)
            self._next_maintain = now + min(1.0, self.config.lease.renew_every)

    def _check_membership(self, now: float) -> None:
        """Between maintenances: if a worker joined or left (a clean stop deletes its heartbeat), maintain
        now, so its roots move at once rather than at the next renewal; and take the free roots rendezvous
        hashing gives this worker (another one just handed them over)."""
        self._next_membership = now + self.config.membership_interval
        within = self.config.lease.duration
        live = self._on_poll_connection(lambda conn: leases.live_workers(conn, within=within))
        if sorted({*live, self.id}) != self.live:
            self._maintain(now)
            return
        free = [r for r in self._on_poll_connection(leases.free_roots)
                if r not in self.held and owner(r, self.live) == self.id]
        if free:
            self._take(free, self.clock.monotonic())
        self._recheck_suspects()

    def _recheck_suspects(self) -> None:
        """Another worker's root found differing stays suspect until this worker's next sweep; its children
        here wait meanwhile. Look again now (one ETag per such root, only while there are some): a root
        its owner repaired is released at once, and so are the children waiting for it."""
        foreign = sorted(r for r in self.suspect if r not in self.held)
        if not foreign:
            return
        try:
            remote = {r: self.backend.root_etag(r) for r in foreign}
            acked = self._on_poll_connection(lambda conn: sorted(sync.acked_of(conn, foreign).items()))
        except ConvergeError as err:
            log.debug("worker %s: cannot look at suspect roots now: %s", self.id, err)
            return
        fixed = {r for r, etag in acked if remote.get(r) == etag}
        if fixed:
            self.suspect -= fixed
            self._parents_moved = True  # children waiting for them go now

    def _maintain(self, now: float) -> None:
        timing = self.config.lease
        began = self.clock.monotonic()  # before the renewal: the lease counts from no earlier than this
        with db.translated(), self.engine.begin() as conn:
            leases.heartbeat(conn, self.id, self._started)
            still = leases.renew_all(conn, self.id, timing.duration)
            live = leases.live_workers(conn, within=timing.duration)
            leases.forget_dead_workers(conn, older_than=_FORGET_DEAD * timing.duration)
            holdings = leases.overview(conn)
            requested = sync.repair_requests(conn)
            blocked = sync.blocked_roots(conn)
        self.live = sorted({*live, self.id})
        self._next_membership = now + self.config.membership_interval
        for root in list(self.held):
            if root not in still or still[root] != self.held[root].epoch:
                log.warning("worker %s lost the lease on root %s", self.id, root)
                self._lost(root)
            elif owner(root, self.live) != self.id:
                with db.translated(), self.engine.begin() as conn:
                    leases.release(conn, self.held[root])
                log.info("worker %s hands root %s over", self.id, root)
                self._forget(root)
            else:
                self.valid_until[root] = began + timing.renew_deadline
        # Take every root rendezvous hashing gives this worker that is free or whose lease expired (a dead
        # worker's), work or not; and look again the moment the next lease held by another worker expires.
        free = [h.root for h in holdings if h.root not in self.held and owner(h.root, self.live) == self.id
                and (h.owner is None or h.owner == self.id or h.expires_in is None or h.expires_in <= 0)]
        if free:
            self._take(free, began)
        expiring = [h.expires_in for h in holdings
                    if h.owner not in (None, self.id) and h.expires_in is not None and h.expires_in > 0]
        self._next_maintain = now + timing.renew_every
        if expiring:
            self._next_maintain = min(self._next_maintain, now + min(expiring) + _EXPIRY_MARGIN)
        for root in requested:
            if root in self.held:
                self.needs_repair.add(root)
        for root in blocked:  # e.g. left blocked by a worker that stopped: look at them again
            if root in self.held and root not in self.blocked:
                self.blocked.add(root)
                self.queue.add(root)

    def _lost(self, root: RootId) -> None:
        self.metrics.leases_lost.inc()
        self._forget(root)

    def _forget(self, root: RootId) -> None:
        self.held.pop(root, None)
        self.valid_until.pop(root, None)
        self.queue.discard(root)
        self.blocked.discard(root)
        self.stalled.discard(root)
        self.needs_repair.discard(root)

    def _acquire(self, roots: list[RootId], now: float) -> None:
        """Lease roots this worker wants now (work for them arrived), at most every ``retry_period``."""
        todo = [r for r in roots if now - self._last_try.get(r, float("-inf")) >= self.config.lease.retry_period]
        if not todo:
            return
        for root in todo:
            self._last_try[root] = now
        try:
            with db.translated(), self.engine.begin() as conn:
                leases.ensure_roots(conn, todo)
        except ConvergeError as err:
            log.info("worker %s: cannot make root rows now: %s", self.id, err)
            return
        self._take(todo, self.clock.monotonic())

    def _take(self, roots: list[RootId], began: float) -> None:
        """Lease ``roots`` in one transaction (rows another transaction holds are skipped, not waited
        for); a root with a backoff its last holder persisted waits it out here too."""
        try:
            with db.translated(), self.engine.begin() as conn:
                taken = leases.acquire_many(conn, roots, self.id, self.config.lease.duration)
                delays = {r: sync.root_delay(conn, r) for r in taken}
        except RaceLost as err:
            if len(roots) > 1:  # on Galera one conflicting root fails the whole transaction: one at a time
                log.info("worker %s: lease race on %d roots (%s); taking them one by one", self.id, len(roots), err)
                for root in roots:
                    self._take([root], began)
            return
        except ConvergeError as err:
            log.info("worker %s: cannot take leases now: %s", self.id, err)
            return
        for root, lease in taken.items():
            self.held[root] = lease
            self.valid_until[root] = began + self.config.lease.renew_deadline
            self._last_try.pop(root, None)
            if delays[root] > 0:
                self.queue.add_rate_limited(root, delays[root])
        self.metrics.leases_taken.inc(len(taken))
        if taken:
            log.info("worker %s took %d roots", self.id, len(taken))

    # -- passes --------------------------------------------------------------------------------------
    def _attempt(self, root: RootId) -> Result | BaseException:
        """Reconcile one root (runs on a pool thread); errors are returned, not raised."""
        lease = self.held.get(root)
        if lease is None:
            return LeaseLost(f"root {root} was given up before its pass started")
        try:
            with db.translated():  # deadlocks and certification failures become RaceLost
                return self.reconciler.reconcile(lease, repair=root in self.needs_repair,
                                                 valid_until=self.valid_until.get(root, math.inf),
                                                 suspect=frozenset(self.suspect - {root}))
        except Exception as err:
            return err

    def _settle(self, root: RootId, outcome: Result | BaseException) -> bool:
        """Turn a pass's outcome into queue calls: synced (forget failures), more (again now), blocked
        (again after ``blocked_retry``), lease lost (drop), race lost or temporary (rate limited), failed."""
        self.queue.done(root)
        self.metrics.passes.labels(_outcome(outcome)).inc()
        lease = self.held.get(root)
        if lease is None:  # given up while the pass ran (lost, or handed over): its writes were fenced
            return False
        if isinstance(outcome, LeaseLost):
            log.warning("%s", outcome)
            self._lost(root)
            return False
        if isinstance(outcome, RaceLost):  # another writer won a row: try again soon, jittered
            self._failed(root, lease, outcome.delay or self.backoff.jitter(0.5), str(outcome), outcome)
            return False
        if isinstance(outcome, TemporaryError):
            self._failed(root, lease, outcome.delay, str(outcome), outcome)
            return False
        if isinstance(outcome, BaseException):  # a bug or a permanent error must not stop other roots
            self._failed(root, lease, None, f"{type(outcome).__name__}: {outcome}", error=outcome)
            return False
        result = outcome
        if result.lease is not None:  # the pass moved the lease's epoch past an older store's fence
            self.held[root] = result.lease
        if result.repaired:
            self.needs_repair.discard(root)
            self.suspect.discard(root)
        self.queue.forget(root)
        if result.more:
            self.queue.add(root)
        progressed = result.pushed > 0 or result.more or result.repaired
        if result.blocked:
            self.blocked.add(root)
            self.queue.add_after(root, self.config.blocked_retry)
            if progressed:
                self.stalled.discard(root)
            else:
                self.stalled.add(root)
        else:
            self.blocked.discard(root)
            self.stalled.discard(root)
        if result.pushed or result.fixed:
            # what this root synced or repaired may be what another root's objects wait for
            self._parents_moved = True
        if self.on_reconciled:
            self.on_reconciled(root)
        return progressed

    def _failed(self, root: RootId, lease: Lease, delay: float | None, message: str,
                error: BaseException | None = None) -> None:
        wait = self.queue.add_rate_limited(root, delay)
        n = self.queue.failures(root)
        self._say_failure(root, n, wait, message, error)
        try:
            with db.translated(), self.engine.begin() as conn:
                sync.record_failure(conn, lease, failures=n, retry_in=wait, message=message)
        except LeaseLost:
            self._lost(root)
        except ConvergeError as err:
            log.warning("root %s: could not record the failure: %s", root, err)

    def _say_failure(self, root: RootId, attempt: int, wait: float, message: str, error: BaseException | None) -> None:
        """A failure is logged once in its words (WARNING; ERROR for refused credentials or a bug, with the
        traceback of a bug), then at DEBUG for ``_REPEAT_AFTER`` s whichever root or attempt says it again:
        a controller outage or a refused token is one line, not one per root per retry."""
        if not self._news(str(error) if error is not None else message):
            log.debug("root %s: attempt %d failed (%s); retry in %.1fs", root, attempt, message, wait)
            return
        bug = error is not None and not isinstance(error, ConvergeError)
        level = logging.ERROR if bug or isinstance(error, ConfigurationError) else logging.WARNING
        log.log(level, "root %s: attempt %d failed (%s); retry in %.1fs (the same failure of any root is logged "
                "at DEBUG for the next %.0f s)", root, attempt, message, wait, _REPEAT_AFTER,
                exc_info=error if bug else None)

    def _news(self, message: str) -> bool:
        """Whether ``message`` was not logged in the last ``_REPEAT_AFTER`` s (and note it now if so)."""
        now = self.clock.monotonic()
        if len(self._said) > 1000:
            self._said = {m: t for m, t in self._said.items() if now - t < _REPEAT_AFTER}
        said = self._said.get(message)
        if said is not None and now - said < _REPEAT_AFTER:
            return False
        self._said[message] = now
        return True

    def _retry_now(self) -> None:
        """Roots backing off because the controller was away are due at once: their delay grew while it
        was away (up to the cap), and would leave the work waiting long after it came back."""
        self._back.clear()
        waiting = self.queue.retry_now()
        if waiting:
            log.info("worker %s: the controller answers again; %d roots retry now", self.id, len(waiting))

    # -- drift ---------------------------------------------------------------------------------------
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
        """Compare every root's acknowledged ETag with the controller's; mark this worker's differing roots
        for repair, and remember every differing root (any worker's) as suspect: a parent there may be
        missing, so children naming it wait for its repair instead of being sent to fail.

        The store is read before and after the controller: a root whose acknowledged ETag moved meanwhile
        was being written, not drifting."""
        with self.metrics.sweep_seconds.time():
            self._compare_all()

    def _compare_all(self) -> None:
        try:
            with db.translated(), self.engine.connect() as conn:
                before = sync.all_acked(conn)
            remote = {s.root: s.etag for s in self.backend.roots()}
            with db.translated(), self.engine.connect() as conn:
                local = sync.all_acked(conn)
        except ConvergeError as err:
            log.log(logging.WARNING if self._news(str(err)) else logging.DEBUG, "sweep skipped: %s", err)
            return
        unknown = [r for r in remote if r not in local]
        if unknown:
            log.warning("controller holds %d roots unknown to the store; they will be emptied", len(unknown))
            with db.translated(), self.engine.begin() as conn:
                leases.ensure_roots(conn, unknown)
        differing = {r for r in set(remote) | set(local)
                     if remote.get(r, 0) != local.get(r, 0) and before.get(r) == local.get(r)}
        self.suspect = differing
        for root in sorted(differing):
            mine = root in self.held or owner(root, self.live) == self.id
            if mine and root not in self.needs_repair:
                log.warning("sweep: root %s differs on the controller; repairing", root)
                self.needs_repair.add(root)


_T = TypeVar("_T")


def _outcome(outcome: Result | BaseException) -> str:
    """A pass's outcome as a metrics label, one of :data:`converge.engine.metrics.PASS_OUTCOMES`."""
    if isinstance(outcome, Result):
        return "blocked" if outcome.blocked else "synced"
    for kind, label in ((LeaseLost, "lease_lost"), (RaceLost, "race_lost"), (TemporaryError, "temporary")):
        if isinstance(outcome, kind):
            return label
    return "failed"
