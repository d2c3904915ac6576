"""``sync_state.state_of`` (the list filter's SQL) says what ``sync_state.derive`` (the attribute shown) says,
for every combination of desired and status rows, in one query over a table standing in for Neutron's."""

import itertools

from sqlalchemy import Column, MetaData, String, Table, create_engine, insert, select
from sqlalchemy.orm import registry

from converge.core.kinds import Kind
from converge.neutron import sync_state
from converge.store.schema import desired, metadata, status


class Thing:
    """A Neutron model: a table with an ``id``."""


_things = Table("things", MetaData(), Column("id", String(36), primary_key=True))
registry().map_imperatively(Thing, _things)

WANTS = [None, "d1"]  # no desired row, or one of digest d1
HAVES = [None] + [(state, pushed, refused) for state in ("synced", "error", "blocked")
                  for pushed in (None, "d0", "d1") for refused in (None, "d0", "d1")]


class Row:
    def __init__(self, **fields):
        self.__dict__.update(fields)


def test_the_sql_state_is_the_derived_state():
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    _things.metadata.create_all(engine)
    expected = {}
    with engine.begin() as conn:
        for n, (want, have) in enumerate(itertools.product(WANTS, HAVES)):
            oid = f"t{n}"
            conn.execute(insert(_things).values(id=oid))
            if want:
                conn.execute(insert(desired).values(id=oid, kind=Kind.PORT.value, root="r", attributes="{}",
                                                    revision=1, digest=want))
                conn.execute(insert(desired).values(id=oid, kind=Kind.NETWORK.value, root="r", attributes="{}",
                                                    revision=1, digest="other"))  # same id, another kind
            if have:
                state, pushed, refused = have
                conn.execute(insert(status).values(id=oid, kind=Kind.PORT.value, root="r", bucket=0, state=state,
                                                   pushed_digest=pushed, error_digest=refused, message="m",
                                                   attempts=0, updated_at=0.0))
            row = Row(state=have[0], pushed_digest=have[1], error_digest=have[2], message="m") if have else None
            expected[oid] = sync_state.derive(Row(digest=want) if want else None, row)[0]
        found = dict(conn.execute(select(_things.c.id, sync_state.state_of(Thing, Kind.PORT))).all())
        assert found == expected
        assert set(found.values()) == set(sync_state.STATES)
        for state in sync_state.STATES:
            query = select(_things.c.id).where(sync_state.state_of(Thing, Kind.PORT).in_([state]))
            assert set(conn.scalars(query)) == {i for i, s in expected.items() if s == state}
