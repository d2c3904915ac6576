"""The reconciler's branches, each against the in-memory controller (``converge.testing.memory``) and a SQLite
store: what the controller ends up holding and what the store's status rows say are the assertions, so a
wrong branch fails them. The same branches run over HTTP in tests/functional/test_engine_*.py."""

from __future__ import annotations

import pytest
from memory_support import acked, assert_in_step, change, desired_docs, journal_keys, record, states, take

from converge.backends.base import Put
from converge.core.canonical import ObjectDoc
from converge.core.errors import LeaseLost, PreconditionFailed, TemporaryError
from converge.core.ids import ObjectId, RootId
from converge.core.kinds import Kind
from converge.engine.reconciler import Reconciler
from converge.testing.clock import FakeClock
from converge.testing.memory import MemoryBackend

P1 = "project-1"
P2 = "project-2"


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


def topology(root: str = P1) -> list:
    return [change(root, "network", "n1", name="blue"),
            change(root, "subnet", "s1", network_id="n1", cidr="10.0.0.0/24"),
            change(root, "port", "port1", network_id="n1", mac_address="fa:16:3e:00:00:01")]


def test_a_plain_push_sends_parents_first_with_the_lease_epoch(engine, backend):
    record(engine, *topology())
    lease = take(engine, P1)
    result = Reconciler(engine, backend).reconcile(lease)
    assert result.pushed == 3 and not result.repaired
    assert_in_step(engine, backend, P1)
    assert journal_keys(engine) == []
    [batch] = backend.batches
    assert [op.key for op in batch.operations] == [("network", "n1"), ("subnet", "s1"), ("port", "port1")]
    assert batch.if_match == 0 and batch.epoch == lease.epoch


def test_a_412_repairs_the_root_and_replans(engine, backend):
    record(engine, *topology())
    reconciler = Reconciler(engine, backend)
    reconciler.reconcile(take(engine, P1))
    # Behind the engine's back: the subnet goes, a stray network appears.
    backend.drift(P1, "subnet", "s1", None)
    backend.drift(P1, "network", "stray", ObjectDoc(Kind.NETWORK, ObjectId("stray"), {"name": "x"}, 1))
    record(engine, change(P1, "network", "n1", "update", revision=2, name="green"))
    result = reconciler.reconcile(take(engine, P1))
    assert result.repaired and result.fixed == 2
    assert_in_step(engine, backend, P1)
    refused, fixed = backend.batches[1:]
    assert [op.key for op in refused.operations] == [("network", "n1")]  # refused: If-Match was stale
    assert sorted(op.key for op in fixed.operations) == [("network", "n1"), ("network", "stray"), ("subnet", "s1")]


def test_an_unexpected_etag_repairs_the_root(engine, backend):
    backend.lose_puts(1)  # the answer claims the batch applied, but the port is not there
    record(engine, *topology())
    result = Reconciler(engine, backend).reconcile(take(engine, P1))
    assert result.repaired and result.fixed == 1
    assert_in_step(engine, backend, P1)
    assert [op.key for op in backend.batches[-1].operations] == [("port", "port1")]


def test_a_refused_object_is_in_error_its_dependents_blocked_and_the_rest_sent(engine, backend):
    backend.reject("network", "n2")
    record(engine, *topology(), change(P1, "network", "n2", name="red"),
           change(P1, "subnet", "s2", network_id="n2", cidr="10.0.2.0/24"))
    result = Reconciler(engine, backend).reconcile(take(engine, P1))
    assert set(backend.docs(P1)) == {("network", "n1"), ("subnet", "s1"), ("port", "port1")}
    found = states(engine)
    assert found[("network", "n2")][0] == "error" and "refused by the test" in found[("network", "n2")][1]
    assert found[("subnet", "s2")][0] == "blocked" and "n2" in found[("subnet", "s2")][1]
    assert {found[k][0] for k in backend.docs(P1)} == {"synced"}
    assert result.blocked == 1 and journal_keys(engine) == []
    assert acked(engine, P1) == backend.root_etag(RootId(P1))


def test_a_refusal_naming_no_operation_halves_the_batch_until_it_names_one(engine, backend):
    backend.reject("network", "n5", named=False)
    record(engine, *[change(P1, "network", f"n{i}", name=f"n{i}") for i in range(8)])
    Reconciler(engine, backend).reconcile(take(engine, P1))
    assert set(backend.docs(P1)) == {("network", f"n{i}") for i in range(8) if i != 5}
    assert states(engine)[("network", "n5")][0] == "error"
    sizes = [len(b.operations) for b in backend.batches if ("network", "n5") in [op.key for op in b.operations]]
    assert sizes == [8, 4, 2, 1]  # halved until the batch names one object
    assert acked(engine, P1) == backend.root_etag(RootId(P1))


def test_a_missing_parent_the_store_believes_synced_blocks_instead_of_failing(engine, backend):
    reconciler = Reconciler(engine, backend)
    record(engine, change(P1, "network", "shared", name="shared"))
    reconciler.reconcile(take(engine, P1))
    backend.drift(P1, "network", "shared", None)  # e.g. a wiped controller; P1 is not repaired yet
    record(engine, change(P2, "subnet", "s2", network_id="shared", cidr="10.0.0.0/24"))
    result = reconciler.reconcile(take(engine, P2))
    state, message = states(engine)[("subnet", "s2")]
    assert state == "blocked" and "shared" in message  # waits; not an error for an operator
    assert backend.docs(P2) == {} and result.blocked == 1
    reconciler.reconcile(take(engine, P1), repair=True)  # the parent's root is repaired...
    reconciler.reconcile(take(engine, P2))  # ...which releases the child
    assert_in_step(engine, backend, P1)
    assert_in_step(engine, backend, P2)


def test_a_delete_whose_children_are_leaving_waits_for_them(engine, backend):
    reconciler = Reconciler(engine, backend)
    record(engine, change(P1, "network", "shared", name="shared"))
    reconciler.reconcile(take(engine, P1))
    record(engine, change(P2, "port", "p2", network_id="shared"))
    reconciler.reconcile(take(engine, P2))
    record(engine, change(P1, "network", "shared", "delete"), change(P2, "port", "p2", "delete"))
    reconciler.reconcile(take(engine, P1))  # P1 first: the controller still holds P2's port
    state, message = states(engine)[("network", "shared")]
    assert state == "blocked" and "port p2" in message
    assert ("network", "shared") in backend.docs(P1)
    reconciler.reconcile(take(engine, P2))
    reconciler.reconcile(take(engine, P1))  # the blocked delete is planned again
    assert backend.docs(P1) == {} and backend.docs(P2) == {}
    assert states(engine) == {}


def test_a_delete_whose_children_are_still_desired_is_refused(engine, backend):
    reconciler = Reconciler(engine, backend)
    record(engine, change(P1, "network", "shared", name="shared"))
    reconciler.reconcile(take(engine, P1))
    record(engine, change(P2, "port", "p2", network_id="shared"))
    reconciler.reconcile(take(engine, P2))
    record(engine, change(P1, "network", "shared", "delete"))
    reconciler.reconcile(take(engine, P1))
    assert states(engine)[("network", "shared")][0] == "error"
    assert ("network", "shared") in backend.docs(P1)


def test_a_lease_taken_over_stops_the_pass_before_any_controller_call(engine, backend):
    record(engine, *topology())
    old = take(engine, P1, "worker-a")
    take(engine, P1, "worker-b")
    with pytest.raises(LeaseLost):
        Reconciler(engine, backend).reconcile(old)
    assert backend.calls == []
    assert [k for k in journal_keys(engine)] == [("network", "n1"), ("subnet", "s1"), ("port", "port1")]


def test_a_writer_with_a_stale_epoch_is_fenced_by_the_controller(engine, backend):
    reconciler = Reconciler(engine, backend)
    record(engine, change(P1, "network", "n1", name="blue"))
    reconciler.reconcile(take(engine, P1, "worker-a"))
    record(engine, change(P1, "network", "n1", "update", revision=2, name="green"))
    old = take(engine, P1, "worker-a")
    before = backend.docs(P1)

    def takeover() -> None:
        # Between worker-a's read of the store and its batch: worker-b takes the root over and writes it
        # (a batch that changes nothing, so worker-a's If-Match still holds: only the epoch can refuse it).
        new = take(engine, P1, "worker-b")
        backend.apply(RootId(P1), if_match=backend.root_etag(RootId(P1)), operations=[], epoch=new.epoch)

    backend.before_next_apply(takeover)
    with pytest.raises(LeaseLost):
        reconciler.reconcile(old)
    assert backend.docs(P1) == before  # worker-a's put never landed
    late = [b for b in backend.batches if b.epoch == old.epoch]
    assert [op.key for b in late for op in b.operations] == [("network", "n1")]
    reconciler.reconcile(take(engine, P1, "worker-b"))
    assert_in_step(engine, backend, P1)
    assert desired_docs(engine, P1)[("network", "n1")].attributes["name"] == "green"


def test_the_memory_backend_refuses_a_lower_epoch_even_with_the_right_etag(backend):
    doc = ObjectDoc(Kind.NETWORK, ObjectId("n1"), {"name": "n"}, 1)
    etag = backend.apply(RootId(P1), if_match=0, operations=[Put(doc)], epoch=5)
    with pytest.raises(PreconditionFailed) as refused:
        backend.apply(RootId(P1), if_match=etag, operations=[], epoch=4)
    assert refused.value.current == etag
    assert backend.apply(RootId(P1), if_match=etag, operations=[], epoch=5) == etag


def test_a_fence_from_before_the_stores_history_is_moved_past_by_the_stores_holder(engine, backend):
    """A store rebuilt (or restored from a backup) next to a controller that kept its fences: the
    controller's last writer had epoch 41, the new store's holder has epoch 1. The store proves the holder
    owns the root, so it moves its epoch past 41 and writes; a holder the store does not know stays fenced."""
    backend.apply(RootId(P1), if_match=0, operations=[], epoch=41)
    record(engine, *topology())
    lease = take(engine, P1, "worker-a")
    assert lease.epoch < 41
    result = Reconciler(engine, backend).reconcile(lease)
    assert result.lease is not None and result.lease.epoch == 42
    assert_in_step(engine, backend, P1)
    record(engine, change(P1, "network", "n1", "update", revision=2, name="green"))
    with pytest.raises(LeaseLost):  # the old lease (epoch 1) is no longer the store's: fenced for good
        Reconciler(engine, backend).reconcile(lease)
    Reconciler(engine, backend).reconcile(result.lease)
    assert desired_docs(engine, P1)[("network", "n1")].attributes["name"] == "green"
    assert_in_step(engine, backend, P1)


def test_no_batch_is_sent_past_the_leases_renew_deadline(engine, backend):
    clock = FakeClock()
    reconciler = Reconciler(engine, backend, clock=clock)
    record(engine, *topology())
    lease = take(engine, P1)
    with pytest.raises(LeaseLost, match="renew_deadline"):
        reconciler.reconcile(lease, valid_until=clock.monotonic())
    assert backend.batches == [] and journal_keys(engine), "sent, or drained, with a lease past its deadline"
    reconciler.reconcile(lease, valid_until=clock.monotonic() + 1.0)
    assert_in_step(engine, backend, P1)


def test_children_of_a_parent_in_a_suspect_root_wait_and_no_batch_must_fail(engine, backend):
    """After a wiped controller, a project's subnet naming another root's network is not sent before that
    root is repaired: it waits (blocked), and the controller never refuses a batch for a missing parent."""
    reconciler = Reconciler(engine, backend)
    record(engine, change(P1, "network", "shared", name="shared"))
    reconciler.reconcile(take(engine, P1))
    backend.drift(P1, "network", "shared", None)  # wiped; the sweep marks P1 suspect
    record(engine, change(P2, "subnet", "s2", network_id="shared", cidr="10.0.0.0/24"))
    result = reconciler.reconcile(take(engine, P2), suspect=frozenset({RootId(P1)}))
    assert result.blocked == 1 and states(engine)[("subnet", "s2")][0] == "blocked"
    assert [b for b in backend.batches if b.root == P2] == [], "a batch was sent that had to fail"
    reconciler.reconcile(take(engine, P1), repair=True)
    reconciler.reconcile(take(engine, P2))
    assert_in_step(engine, backend, P1)
    assert_in_step(engine, backend, P2)
    assert len([b for b in backend.batches if b.root == P2]) == 1, "the subnet took more than one batch"


def test_an_object_a_failed_pass_learned_differing_is_repaired_by_the_next_pass(engine, backend):
    """Repair learns what the controller holds (the store's belief now says: drifted) and the pass then fails
    (the controller changed again before the fix went out: 412 right after repair). The next pass's repair
    finds only the new difference — the first is already believed — yet both objects must be put back:
    what repair learned is work, kept in the journal, not only in the pass that failed."""
    record(engine, *topology())
    reconciler = Reconciler(engine, backend)
    reconciler.reconcile(take(engine, P1))
    backend.drift(P1, "network", "n1", ObjectDoc(Kind.NETWORK, ObjectId("n1"), {"name": "edited"}, 1))
    # the repair's fix is about to go out when the port is edited too
    backend.before_next_apply(lambda: backend.drift(
        P1, "port", "port1", ObjectDoc(Kind.PORT, ObjectId("port1"), {"network_id": "n1", "name": "x"}, 1)))
    with pytest.raises(TemporaryError, match="412 again right after repair"):
        reconciler.reconcile(take(engine, P1), repair=True)
    assert ("network", "n1") in journal_keys(engine)  # the learned difference waits in the journal
    result = reconciler.reconcile(take(engine, P1), repair=True)
    assert result.repaired
    while journal_keys(engine):  # the journal rows repair added drain in cheap passes
        reconciler.reconcile(take(engine, P1))
    assert desired_docs(engine, P1) == backend.docs(P1)
    assert_in_step(engine, backend, P1)
