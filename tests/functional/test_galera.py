"""Converge on a 3-node Galera cluster (``converge.testing.galera``): the cluster itself, a node killed and
rejoined under writes, Converge's schema, two workers on two nodes racing for one lease, one object
recorded through two nodes at once, and two Neutron API servers, each on its own node, sharing the work.

On Galera two transactions on two nodes do not wait on each other's row locks: the one certified second is
rolled back at commit with error 1213, which ``store.db.translated`` turns into ``RaceLost``. The race
tests count those and fail if none happened, so they cannot pass without testing the conflict.
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from engine_support import audit, change
from neutron_support import (
    converge_stack,
    module_fabric,  # noqa: F401 - the shared "fabric" fixture
    wait_converged,
)
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from converge.core.errors import RaceLost
from converge.core.ids import RootId, WorkerId
from converge.store import db, leases, migrate
from converge.store.intent import record
from converge.store.schema import desired, journal, metadata, roots
from converge.testing.fabric import FabricProcess
from converge.testing.galera import GaleraCluster
from converge.testing.neutron import owned

pytestmark = [pytest.mark.galera, pytest.mark.timeout(300)]

T = TypeVar("T")
_names = itertools.count()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GaleraCluster]:
    with GaleraCluster(tmp_path_factory.mktemp("galera")) as galera:
        print(f"\ncluster formed in {galera.timings['form']:.1f} s")
        yield galera


@pytest.fixture
def engines(cluster: GaleraCluster) -> Iterator[Callable[..., Engine]]:
    """``engines(node, database, causal=False)``: Converge's engine on one node, disposed of afterwards."""
    made: list[Engine] = []

    def make(node: int, database: str, *, causal: bool = False) -> Engine:
        made.append(db.make_engine(cluster.url(node, database, causal=causal)))
        return made[-1]

    yield make
    for engine in made:
        engine.dispose()


@pytest.fixture
def converge_db(cluster: GaleraCluster, engines: Callable[..., Engine]) -> str:
    """A fresh database with Converge's schema, migrated through node 1; its name."""
    name = f"converge_g{next(_names)}"
    cluster.create_database(name)
    migrate.upgrade(engines(1, name))
    return name


def in_threads(*work: Callable[[], T], timeout: float = 60.0) -> list[T]:
    """Run each callable on its own thread; their results, or the first exception."""
    with ThreadPoolExecutor(len(work)) as pool:
        futures = [pool.submit(w) for w in work]
        return [f.result(timeout) for f in futures]


def test_the_cluster_forms_and_a_write_on_any_node_is_read_on_every_other(cluster, engines):
    assert sorted(cluster.pids) == [1, 2, 3]
    for node in cluster.nodes:
        assert node.status("wsrep_cluster_size", "wsrep_local_state_comment") == {
            "wsrep_cluster_size": "3", "wsrep_local_state_comment": "Synced"}
    cluster.create_database("replicated")
    cluster.node(1).sql("CREATE TABLE replicated.t (node INT PRIMARY KEY)")
    for n in (1, 2, 3):
        cluster.node(n).sql(f"INSERT INTO replicated.t VALUES ({n})")
    for n in (1, 2, 3):
        with engines(n, "replicated", causal=True).connect() as conn:
            assert conn.execute(text("SELECT node FROM t ORDER BY node")).scalars().all() == [1, 2, 3]


class Writer:
    """Inserts numbered rows through one node until stopped; notes which commits were acknowledged. A
    statement that failed (the node was killed under it, or is down) may or may not have committed."""

    def __init__(self, url: str, node: int) -> None:
        self.engine = sqlalchemy.create_engine(url, pool_pre_ping=True)
        self.node = node
        self.acked: list[tuple[str, float]] = []
        self.unsure: set[str] = set()
        self.stop = threading.Event()

    def __call__(self) -> None:
        for i in itertools.count():
            if self.stop.is_set():
                return
            key = f"{self.node}-{i}"
            try:
                with self.engine.begin() as conn:
                    conn.execute(text("INSERT INTO t (k, node) VALUES (:k, :n)"), {"k": key, "n": self.node})
                self.acked.append((key, time.monotonic()))
            except sqlalchemy.exc.DBAPIError:
                self.unsure.add(key)
                time.sleep(0.05)


def test_a_node_killed_under_writes_rejoins_and_nothing_acknowledged_is_lost(cluster, engines):
    cluster.create_database("kill9")
    cluster.node(1).sql("CREATE TABLE kill9.t (k VARCHAR(40) PRIMARY KEY, node INT NOT NULL)")
    writers = [Writer(cluster.url(n, "kill9"), n) for n in (1, 2, 3)]
    with ThreadPoolExecutor(len(writers)) as pool:
        running = [pool.submit(w) for w in writers]
        try:
            time.sleep(1.0)
            cluster.kill(2)
            killed = time.monotonic()
            cluster.wait_synced()  # the survivors notice and form a view of two
            noticed = time.monotonic() - killed
            time.sleep(1.0)
            log = cluster.node(2).workdir / "error.log"
            offset = log.stat().st_size
            cluster.restart(2)
            rejoined = time.monotonic()
            transfer = "IST" if b"rsync IST completed" in log.read_bytes()[offset:] else "SST"
            print(f"\nthe survivors noticed the kill in {noticed:.1f} s; "
                  f"node 2 rejoined by {transfer} in {cluster.timings['restart']:.1f} s")
            time.sleep(1.0)
        finally:
            for w in writers:
                w.stop.set()
            for future in running:
                future.result(30)
    for w in writers:
        w.engine.dispose()
    acked = {key for w in writers for key, _ in w.acked}
    during = [key for w in writers[::2] for key, at in w.acked if killed < at < rejoined]
    after = [key for key, at in writers[1].acked if at > rejoined]
    assert len(during) > 50, "the survivors did not go on writing while node 2 was down"
    assert after, "the rejoined node took no writes"
    held = {}
    for n in (1, 2, 3):
        with engines(n, "kill9", causal=True).connect() as conn:
            held[n] = set(conn.execute(text("SELECT k FROM t")).scalars())
    assert held[1] == held[2] == held[3], "the nodes disagree"
    assert acked - held[1] == set(), "acknowledged writes were lost"
    # What is held but was not acknowledged can only be a statement whose answer was lost (the kill).
    assert held[1] - acked <= {key for w in writers for key in w.unsure}
    print(f"writes acknowledged {len(acked)}, {len(during)} while node 2 was down; failed: "
          f"{ {w.node: len(w.unsure) for w in writers} }")


def test_converge_db_upgrade_on_one_node_makes_the_schema_on_every_node(cluster, engines):
    cluster.create_database("cli_schema")
    done = subprocess.run([sys.executable, "-m", "converge.cli.main", "db", "upgrade"],
                          env=os.environ | {"CONVERGE_DB": cluster.url(2, "cli_schema")},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for n in (1, 3):
        with engines(n, "cli_schema", causal=True).connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            stage = migrate.schema_state(conn).stage
        assert [d for d in diff if "converge_alembic_version" not in repr(d)] == []
        assert stage is migrate.Stage.CURRENT  # both heads, expand and contract


ROOT = RootId("project-raced")
ROUNDS = 150


def test_two_workers_on_two_nodes_race_for_one_lease(converge_db, engines):
    """Each round both try to take the free lease at once, one through node 1, one through node 2; the
    winner then gives it back. The round's loser either saw the winner's row (None) or lost certification
    (RaceLost); it never holds the lease too, and every grant is one new epoch."""
    with engines(1, converge_db).begin() as conn:
        leases.ensure_roots(conn, [ROOT])
    barrier = threading.Barrier(2, timeout=30)
    outcomes: dict[WorkerId, list[leases.Lease | RaceLost | None]] = {}

    def race(me: WorkerId, node: int) -> None:
        engine, reader = engines(node, converge_db), engines(node, converge_db, causal=True)
        mine = outcomes.setdefault(me, [])
        try:
            for r in range(ROUNDS):
                with reader.connect() as conn:  # the node has applied the last release
                    assert conn.execute(select(roots.c.owner).where(roots.c.root == ROOT)).scalar() is None
                barrier.wait()
                try:
                    with db.translated(), engine.begin() as conn:
                        got = leases.acquire(conn, ROOT, me, 30.0)
                    mine.append(got)
                except RaceLost as lost:
                    mine.append(lost)
                barrier.wait()
                if isinstance(mine[-1], leases.Lease) and r < ROUNDS - 1:
                    with db.translated(), engine.begin() as conn:
                        leases.release(conn, mine[-1])
                barrier.wait()
        except BaseException:
            barrier.abort()
            raise

    in_threads(lambda: race(WorkerId("worker-n1"), 1), lambda: race(WorkerId("worker-n2"), 2))
    rounds = list(zip(*outcomes.values(), strict=True))
    grants = [[o for o in outcome if isinstance(o, leases.Lease)] for outcome in rounds]
    kinds = Counter(type(o).__name__ for outcome in rounds for o in outcome)
    print(f"\n{ROUNDS} rounds: {dict(kinds)}")
    assert all(len(g) == 1 for g in grants), [i for i, g in enumerate(grants) if len(g) != 1]
    epochs = [g[0].epoch for g in grants]
    assert epochs == list(range(1, ROUNDS + 1)), "an epoch granted twice, or a grant lost"
    assert kinds["RaceLost"] > 0, "no certification conflict happened: the race was not tested"
    last = grants[-1][0]
    for n in (1, 2, 3):
        with engines(n, converge_db, causal=True).connect() as conn:
            row = conn.execute(select(roots.c.owner, roots.c.epoch).where(roots.c.root == ROOT)).one()
        assert (row.owner, row.epoch) == (last.owner, last.epoch)


CHANGES_PER_THREAD = 40


def test_one_object_recorded_through_two_nodes_at_once_keeps_every_change_and_the_newest_state(converge_db, engines):
    """Both threads record the same network with revisions drawn from one counter, each through its node,
    the pair starting together every round; a RaceLost is retried as oslo.db's retry decorator does (the
    whole transaction, after a growing random pause), so a loser's older revision often commits after the
    winner's newer one: the revision guard must keep the newer state."""
    revisions = itertools.count(1)
    lock = threading.Lock()
    committed: list[int] = []
    races = Counter[str]()
    barrier = threading.Barrier(2, timeout=30)

    def recorder(node: int) -> None:
        engine = engines(node, converge_db)
        try:
            for _ in range(CHANGES_PER_THREAD):
                barrier.wait()
                with lock:
                    revision = next(revisions)
                update = change("p-raced", "network", "net-raced", "update", revision, name=f"rev-{revision}")
                for attempt in range(20):
                    try:
                        with db.translated(), engine.begin() as conn:
                            record(conn, update)
                        break
                    except RaceLost:
                        races[f"node{node}"] += 1
                        time.sleep(random.uniform(0, min(0.5, 0.02 * 2 ** attempt)))
                else:
                    raise AssertionError(f"revision {revision} lost its race 20 times")
                with lock:
                    committed.append(revision)
        except BaseException:
            barrier.abort()
            raise

    in_threads(lambda: recorder(1), lambda: recorder(2))
    total = 2 * CHANGES_PER_THREAD
    late = sum(1 for i, rev in enumerate(committed) if rev < max(committed[:i], default=0))
    print(f"\nRaceLost {dict(races)}; older revisions committed after a newer one: {late}")
    assert sorted(committed) == list(range(1, total + 1))
    assert sum(races.values()) > 0, "no certification conflict happened: the race was not tested"
    for n in (1, 2, 3):
        with engines(n, converge_db, causal=True).connect() as conn:
            assert conn.execute(select(func.count()).select_from(journal)
                                .where(journal.c.id == "net-raced")).scalar() == total, "a change was lost"
            row = conn.execute(select(desired.c.revision, desired.c.attributes)
                               .where(desired.c.id == "net-raced")).one()
        assert (row.revision, row.attributes) == (total, f'{{"name":"rev-{total}"}}')


PORTS = 40
UPDATES = 16
PROJECT = "p-galera"


def creates(cloud: Any, network_id: str, i: int) -> int:
    answer = cloud.network.post("/ports", json={"port": owned(PROJECT, network_id=network_id, name=f"vm-{i}")},
                                raise_exc=False)
    return int(answer.status_code)


def updates(cloud: Any, network_id: str, i: int) -> int:
    answer = cloud.network.put(f"/networks/{network_id}", json={"network": {"description": f"update {i}"}},
                               raise_exc=False)
    return int(answer.status_code)


@pytest.mark.neutron
def test_two_neutron_servers_on_two_nodes_create_ports_at_once_and_every_port_converges(
        cluster: GaleraCluster, fabric: FabricProcess, tmp_path: Path) -> None:
    """Two Neutron stacks (API under uWSGI, periodic workers with Converge's sync worker), one on node 1 and
    one on node 2 of one database; ports created through both at once all answer 201 and reach the
    controller exactly, without a repair of the project."""
    first = converge_stack(tmp_path / "neutron1", mariadb=cluster.node(1), fabric=fabric)
    second = converge_stack(tmp_path / "neutron2", mariadb=cluster.node(2), fabric=fabric)
    # converge_stack's options are [converge]'s: the second stack shares the first one's database.
    second.database, second.new_database = first.database, False
    with first, second:
        clouds = [first.connection(), second.connection()]
        net = clouds[0].network.create_network(**owned(PROJECT, name="galera"))
        clouds[1].network.create_subnet(**owned(PROJECT, network_id=net.id, cidr="10.70.0.0/24", ip_version=4))
        before, conflicts = max((e["seq"] for e in audit(fabric)), default=0), cluster.conflicts()
        with ThreadPoolExecutor(8) as pool:
            created = list(pool.map(lambda i: creates(clouds[i % 2], net.id, i), range(PORTS)))
            # One row changed through both nodes at once: conflicts Neutron's DB retry must absorb.
            updated = list(pool.map(lambda i: updates(clouds[i % 2], net.id, i), range(UPDATES)))
        conflicts = cluster.conflicts() - conflicts
        assert (created, updated) == ([201] * PORTS, [200] * UPDATES)
        state = wait_converged(clouds[0], fabric, PROJECT)
        assert wait_converged(clouds[1], fabric, PROJECT) == state
        assert sum(1 for kind, _ in state if kind == "port") == PORTS
        writes = [e for e in audit(fabric, after=before) if e["root"] == PROJECT and e["status"] == 200]
        operations = sum(e["operations"] for e in writes)
        print(f"\nstart-up {first.timings} {second.timings}; {conflicts} conflicts during the writes; "
              f"{len(writes)} batches of {operations} operations for {len(state)} objects by "
              f"{len({e['writer'] for e in writes})} workers")
        # No resync: the project was never repaired, nor sent again whole.
        logs = first.periodic_log_tail(100_000) + second.periodic_log_tail(100_000)
        assert "repairing" not in logs and "repair found" not in logs
        assert operations < PORTS + len(state)
