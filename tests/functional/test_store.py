"""The intent store on real SQLite and MariaDB: what record() writes, its guards, and the drain order."""

import json

import pytest
from sqlalchemy import func, select

from converge.store import sync
from converge.store.intent import Change, InvalidChange, already_recorded, record, record_many
from converge.store.schema import desired, journal


def net(root, oid, revision, op="create", **attrs):
    return Change.build(root=root, kind_="network", id_=oid, op=op,
                        attributes=None if op == "delete" else attrs, revision=revision)


def test_one_journal_row_per_change_and_the_latest_desired_state(store):
    with store.begin() as conn:
        record(conn, net("p1", "n1", 1, name="a"))
        record(conn, net("p1", "n1", 2, "update", name="b"))
        record_many(conn, [net("p1", "n2", 1, name="x"), net("p1", "n2", 2, "delete")])
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(journal)).scalar() == 4
        rows = {r.id: r for r in conn.execute(select(desired))}
    assert set(rows) == {"n1"} and json.loads(rows["n1"].attributes) == {"name": "b"}


def test_an_older_revision_never_replaces_a_newer_desired_state(store):
    with store.begin() as conn:
        record(conn, net("p1", "n1", 5, name="new"))
    with store.begin() as conn:  # a late commit of an older change (another API server)
        record(conn, net("p1", "n1", 4, "update", name="old"))
    with store.connect() as conn:
        row = conn.execute(select(desired)).one()
        assert (row.revision, json.loads(row.attributes)) == (5, {"name": "new"})
        assert conn.execute(select(func.count()).select_from(journal)).scalar() == 2  # still journaled


def test_a_put_is_already_recorded_only_with_the_same_root_and_attributes(store):
    with store.begin() as conn:
        assert not already_recorded(conn, net("p1", "n1", 1, name="a"))  # never recorded
        record(conn, net("p1", "n1", 1, name="a"))
        assert already_recorded(conn, net("p1", "n1", 7, "update", name="a"))  # only the revision moved
        assert not already_recorded(conn, net("p1", "n1", 7, "update", name="b"))
        assert not already_recorded(conn, net("p2", "n1", 7, "update", name="a"))
        assert not already_recorded(conn, net("p1", "n1", 7, "delete"))


def test_roots_drain_oldest_change_first(store):
    with store.begin() as conn:
        record_many(conn, [net("b", "n1", 1), net("a", "n2", 1), net("c", "n3", 1), net("a", "n4", 1)])
    with store.connect() as conn:
        assert sync.pending_roots(conn) == ["b", "a", "c"]


@pytest.mark.parametrize("kwargs, message", [
    ({"kind_": "switch"}, "unknown kind 'switch'"),
    ({"id_": "bad id!"}, "invalid object id"),
    ({"root": ""}, "invalid root id"),
    ({"op": "upsert"}, "unknown op 'upsert'"),
    ({"revision": -1}, "revision must be an integer >= 0"),
    ({"attributes": {"mtu": 1.5}}, "floats are not allowed"),
    ({"kind_": "subnet", "attributes": {"cidr": "10.0.0.0/24"}}, "subnet needs attribute 'network_id'"),
    ({"kind_": "port", "attributes": {"network_id": "n", "security_groups": "sg"}}, "must be a list"),
])
def test_bad_input_from_the_caller_is_refused_naming_the_problem(kwargs, message):
    args = {"root": "p1", "kind_": "network", "id_": "n1", "op": "create", "attributes": {}, "revision": 1}
    args.update(kwargs)
    with pytest.raises(InvalidChange, match=message):
        Change.build(**args)
