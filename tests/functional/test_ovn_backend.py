"""The OVN backend against a real Northbound DB (Debian's OVN 23.03 as plain processes).

What the design claims (docs/design/ovn.md) and each test makes happen: fingerprints computed from the
replica equal the engine's expectation; a stale lease epoch, a racing writer and a transaction that lands
late are fenced; referential integrity OVSDB does not give is enforced; rows of other writers are left
alone; an out-of-band change is seen as drift (pushed to a callback) and a re-put restores it; NB down
fails fast and the backend comes back by itself.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from ovn_support import (
    Relay,
    connect,
    deletes,
    doc,
    eventually,
    fingerprint,
    group,
    nb_names,
    network,
    port,
    puts,
    rule,
    subnet,
)

from converge.backends.base import Put
from converge.backends.ovn import OvnBackend
from converge.core.errors import ControllerUnavailable, ObjectRejected, PreconditionFailed
from converge.core.ids import RootId
from converge.core.kinds import Kind
from converge.testing.ovn import OvnControlPlane

pytestmark = pytest.mark.ovn


@pytest.fixture(scope="module")
def ovn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OvnControlPlane]:
    with OvnControlPlane(tmp_path_factory.mktemp("ovn")) as control:
        yield control


@pytest.fixture
def backend(ovn: OvnControlPlane) -> Iterator[OvnBackend]:
    b = connect(ovn)
    yield b
    b.close()


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def topology() -> tuple[RootId, list]:
    root = RootId("p-" + uuid.uuid4().hex[:12])
    net, sub, sg, r1, p1 = ids(5)
    docs = [network(net), subnet(sub, net, "10.1.0.0/24", "10.1.0.1"), group(sg),
            rule(r1, sg, protocol="tcp", port_min=22, port_max=22),
            port(p1, net, "fa:16:3e:00:00:01", [(sub, "10.1.0.5")], [sg])]
    return root, docs


def test_a_batch_writes_ml2_ovn_rows_and_the_fingerprint_is_the_engines(backend: OvnBackend,
                                                                        ovn: OvnControlPlane) -> None:
    root, docs = topology()
    net, _, sg, _, p1 = docs
    etag = backend.apply(root, if_match=0, operations=puts(*docs), epoch=1)
    assert etag == fingerprint(*docs)
    assert backend.root_etag(root) == etag
    assert f"neutron-{net.id}" in nb_names(ovn, "Logical_Switch")
    assert p1.id in nb_names(ovn, "Logical_Switch_Port")
    assert f"pg_{sg.id.replace('-', '_')}" in nb_names(ovn, "Port_Group")
    assert "neutron_pg_drop" in nb_names(ovn, "Port_Group")
    acls = ovn.nbctl("--bare", "--columns=match", "list", "ACL")
    assert "tcp.dst == 22" in acls
    # the same batch again changes nothing and answers the same fingerprint
    assert backend.apply(root, if_match=etag, operations=puts(*docs), epoch=1) == etag
    summary = {s.root: s for s in backend.roots()}
    assert summary[root].etag == etag and summary[root].objects == len(docs)


def test_a_stale_epoch_is_fenced(backend: OvnBackend) -> None:
    root, docs = topology()
    etag = backend.apply(root, if_match=0, operations=puts(*docs[:2]), epoch=5)
    with pytest.raises(PreconditionFailed):
        backend.apply(root, if_match=etag, operations=puts(*docs[2:]), epoch=4)
    assert backend.root_etag(root) == etag  # nothing of the stale writer's batch landed
    assert backend.apply(root, if_match=etag, operations=puts(*docs[2:]), epoch=6) == fingerprint(*docs)


def test_a_wrong_if_match_is_a_412_with_the_current_fingerprint(backend: OvnBackend) -> None:
    root, docs = topology()
    etag = backend.apply(root, if_match=0, operations=puts(docs[0]), epoch=1)
    with pytest.raises(PreconditionFailed) as caught:
        backend.apply(root, if_match=0, operations=puts(docs[2]), epoch=1)
    assert caught.value.current == etag


def test_a_transaction_that_lands_late_after_a_new_owner_wrote_is_fenced(ovn: OvnControlPlane,
                                                                         backend: OvnBackend) -> None:
    """The old owner's transaction is held on the wire until its client gives up; the new owner (higher
    epoch) writes meanwhile; when the old one reaches NB its marker check fails and nothing of it lands."""
    root, docs = topology()
    etag = backend.apply(root, if_match=0, operations=puts(docs[0]), epoch=1)
    relay = Relay(int(ovn.nb_tcp.rsplit(":", 1)[1]))
    stale = connect(ovn, relay.remote, timeout=1.0)
    try:
        eventually(lambda: stale.root_etag(root) == etag, "the stale writer's replica")
        relay.open.clear()  # hold everything the stale writer sends
        late = doc(Kind.SECURITY_GROUP, str(uuid.uuid4()), name="late", description="", stateful=True)
        with pytest.raises(ControllerUnavailable):
            stale.apply(root, if_match=etag, operations=[Put(late)], epoch=1)
        newer = backend.apply(root, if_match=etag, operations=puts(docs[2]), epoch=2)
        relay.open.set()  # the held transaction reaches NB now
        eventually(lambda: stale.root_etag(root) == newer, "the stale replica catching up")
        # give the late transaction every chance to land, then check it did not
        eventually(lambda: not stale.replica.inflight, "the late transaction to finish", deadline=10)
        assert backend.root_etag(root) == newer
        assert f"pg_{late.id.replace('-', '_')}" not in nb_names(ovn, "Port_Group")
    finally:
        stale.close()
        relay.close()


def test_racing_writers_one_wins_the_other_gets_412(ovn: OvnControlPlane, backend: OvnBackend) -> None:
    root, docs = topology()
    etag = backend.apply(root, if_match=0, operations=puts(docs[0]), epoch=1)
    other = connect(ovn)
    try:
        eventually(lambda: other.root_etag(root) == etag, "the second writer's replica")
        outcomes: list[object] = []
        start = threading.Barrier(2)

        def write(b: OvnBackend, d: object) -> None:
            start.wait()
            try:
                outcomes.append(b.apply(root, if_match=etag, operations=[Put(d)], epoch=1))  # type: ignore[arg-type]
            except PreconditionFailed as err:
                outcomes.append(err)

        threads = [threading.Thread(target=write, args=(b, d)) for b, d in ((backend, docs[2]), (other, group(
            str(uuid.uuid4()))))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(isinstance(o, PreconditionFailed) for o in outcomes) == 1, outcomes
        winner = next(o for o in outcomes if isinstance(o, int))
        eventually(lambda: backend.root_etag(root) == winner, "both replicas to agree")
    finally:
        other.close()


def test_referential_integrity(backend: OvnBackend, ovn: OvnControlPlane) -> None:
    root, docs = topology()
    net, sub, sg, r1, p1 = docs
    with pytest.raises(ObjectRejected) as missing:
        backend.apply(root, if_match=0, operations=puts(p1), epoch=1)
    assert missing.value.parent == ("network", net.id)
    etag = backend.apply(root, if_match=0, operations=puts(*docs), epoch=1)
    with pytest.raises(ObjectRejected) as children:
        backend.apply(root, if_match=etag, operations=deletes(net), epoch=1)
    assert ("port", p1.id) in {(k, i) for _, k, i in children.value.children}
    assert p1.id in nb_names(ovn, "Logical_Switch_Port")  # nothing was deleted behind the refusal
    etag = backend.apply(root, if_match=etag, operations=deletes(p1, r1, sg, sub, net), epoch=1)
    assert etag == 0
    assert f"neutron-{net.id}" not in nb_names(ovn, "Logical_Switch")


def test_rows_of_other_writers_are_left_alone(backend: OvnBackend, ovn: OvnControlPlane) -> None:
    root, docs = topology()
    net = docs[0]
    ovn.nbctl("ls-add", "someone-elses-switch")
    ovn.nbctl("lsp-add", "someone-elses-switch", "someone-elses-port")
    etag = backend.apply(root, if_match=0, operations=puts(*docs), epoch=1)
    # another writer hangs a port below Converge's switch: deleting the switch would delete it
    ovn.nbctl("lsp-add", f"neutron-{net.id}", "foreign-port-" + net.id[:8])
    etag = backend.apply(root, if_match=etag, operations=deletes(docs[4], docs[3], docs[2], docs[1]), epoch=1)
    with pytest.raises(ObjectRejected, match="did not write"):
        backend.apply(root, if_match=etag, operations=deletes(net), epoch=1)
    assert {"someone-elses-switch"} <= nb_names(ovn, "Logical_Switch")
    assert {"someone-elses-port", "foreign-port-" + net.id[:8]} <= nb_names(ovn, "Logical_Switch_Port")


def test_out_of_band_changes_are_drift_pushed_to_the_engine_and_a_put_restores_them(
        backend: OvnBackend, ovn: OvnControlPlane) -> None:
    root, docs = topology()
    _, _, sg, r1, p1 = docs
    seen: list[RootId] = []
    backend.on_drift(seen.append)
    etag = backend.apply(root, if_match=0, operations=puts(*docs), epoch=1)
    seen.clear()
    ovn.nbctl("lsp-del", p1.id)
    eventually(lambda: root in seen, "the deletion pushed as drift")
    assert backend.root_etag(root) == etag - p1.digest() or backend.root_etag(root) != etag
    etag2 = backend.apply(root, if_match=backend.root_etag(root), operations=puts(p1), epoch=1)
    assert etag2 == etag and p1.id in nb_names(ovn, "Logical_Switch_Port")
    # an edited ACL (another writer changes its match) is drift too
    seen.clear()
    acl = ovn.nbctl("--bare", "--columns=_uuid", "find", "ACL",
                    f"external_ids:\"neutron:security_group_rule_id\"=\"{r1.id}\"").strip()
    ovn.nbctl("set", "ACL", acl, 'match="outport == @x && ip4"')
    eventually(lambda: root in seen, "the edited ACL pushed as drift")
    assert backend.root_etag(root) != etag
    assert backend.apply(root, if_match=backend.root_etag(root), operations=puts(r1), epoch=1) == etag
    # a wiped port group: the group and every member port differ
    seen.clear()
    ovn.nbctl("destroy", "Port_Group", f"pg_{sg.id.replace('-', '_')}")
    eventually(lambda: root in seen, "the wiped port group pushed as drift")
    assert backend.apply(root, if_match=backend.root_etag(root), operations=puts(sg, r1, p1), epoch=1) == etag


def test_our_own_writes_are_not_reported_as_drift(backend: OvnBackend) -> None:
    root, docs = topology()
    seen: list[RootId] = []
    backend.on_drift(seen.append)
    backend.apply(root, if_match=0, operations=puts(*docs), epoch=1)
    assert root not in seen


def test_a_floating_ip_without_a_port_has_no_row_but_counts(backend: OvnBackend) -> None:
    root = RootId("p-" + uuid.uuid4().hex[:12])
    net, fip = ids(2)
    ext = network(net, **{"router:external": True})
    floating = doc(Kind.FLOATING_IP, fip, floating_network_id=net, floating_ip_address="172.24.4.9",
                   description="")
    etag = backend.apply(root, if_match=0, operations=puts(ext, floating), epoch=1)
    assert etag == fingerprint(ext, floating)
    assert backend.apply(root, if_match=etag, operations=deletes(floating), epoch=1) == fingerprint(ext)


def test_nb_down_fails_fast_and_the_backend_comes_back(ovn: OvnControlPlane, tmp_path: Path) -> None:
    backend = connect(ovn)
    back: list[float] = []
    backend.on_available(lambda: back.append(time.monotonic()))
    try:
        root, docs = topology()
        etag = backend.apply(root, if_match=0, operations=puts(docs[0]), epoch=1)
        ovn.stop_nb()
        eventually(lambda: not backend.connected(), "the backend to see NB down")
        with pytest.raises(ControllerUnavailable):
            backend.apply(root, if_match=etag, operations=puts(docs[2]), epoch=1)
        ovn.start_nb()
        restarted = time.monotonic()
        eventually(backend.connected, "the backend to reconnect", deadline=30)
        eventually(lambda: back, "the backend to say NB answers again (on_available)")
        print(f"\nreplica connected again {max(0.0, back[0] - restarted):.2f} s after start_nb() returned")
        assert backend.apply(root, if_match=etag, operations=puts(docs[2]), epoch=1) == fingerprint(docs[0], docs[2])
    finally:
        backend.close()


def test_a_wrong_nb_address_is_a_clear_error() -> None:
    backend = OvnBackend(["tcp:127.0.0.1:1"], timeout=1.0, start_timeout=0.5)
    try:
        with pytest.raises(ControllerUnavailable, match="not connected"):
            backend.apply(RootId("r"), if_match=0, operations=[], epoch=1)
        assert backend.health()[0].state == "down"
    finally:
        backend.close()


def test_the_drop_groups_acls_deleted_or_edited_out_of_band_are_restored(backend: OvnBackend,
                                                                          ovn: OvnControlPlane) -> None:
    """Without them every port with port security is open, and no object's fingerprint covers them."""
    root, docs = topology()
    backend.apply(root, if_match=0, operations=puts(*docs), epoch=1)

    def drop_acls() -> list[str]:
        uuids = ovn.nbctl("--bare", "--columns=acls", "list", "Port_Group", "neutron_pg_drop").split()
        return sorted(ovn.nbctl("--bare", "--columns=match", "list", "ACL", u).strip() for u in uuids)

    expected = drop_acls()
    assert expected == ["inport == @neutron_pg_drop && ip", "outport == @neutron_pg_drop && ip"]
    ovn.nbctl("clear", "Port_Group", "neutron_pg_drop", "acls")
    eventually(lambda: drop_acls() == expected, "the deleted drop ACLs restored")
    victim = ovn.nbctl("--bare", "--columns=acls", "list", "Port_Group", "neutron_pg_drop").split()[0]
    ovn.nbctl("set", "ACL", victim, 'match="inport == @neutron_pg_drop && ip4"')
    eventually(lambda: drop_acls() == expected, "the edited drop ACL replaced")
