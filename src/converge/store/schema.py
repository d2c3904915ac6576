"""Table definitions (prefix ``converge_``), shared by the store code and the Alembic migrations.

Who writes what is part of the design (docs/design/foundation.md): ``converge_desired`` only the API
transaction, ``converge_journal`` inserted by the API transaction and deleted by workers, the rest only
workers. Timestamps are float seconds since the epoch taken from the database's clock (``db_now()``) so
that every host agrees on lease expiry.
"""

from __future__ import annotations

import enum

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ROOT = String(128)
KIND = String(32)
OID = String(128)
HEX = String(64)
# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias).
SEQ = BigInteger().with_variant(Integer, "sqlite")

ZERO_HEX = "0" * 64


class JournalOp(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    REPAIR = "repair"  # written by a repair for an object found differing on the controller (store.sync)


class ObjectState(enum.StrEnum):
    """Lifecycle of one object as the workers see it (``pending`` is also derived, see status.py)."""

    PENDING = "pending"
    SYNCED = "synced"
    ERROR = "error"  # the controller rejected this exact desired state; waits for a change or a retry
    BLOCKED = "blocked"  # waits for a parent that is in error, blocked, or not yet synced


desired = Table(
    "converge_desired",
    metadata,
    Column("id", OID, primary_key=True),  # first: lookups by a list of ids use the primary key
    Column("kind", KIND, primary_key=True),
    Column("root", ROOT, nullable=False),
    Column("attributes", Text, nullable=False),  # canonical JSON
    Column("revision", BigInteger, nullable=False),
    Column("digest", HEX, nullable=False),
    Index(None, "root"),
)

journal = Table(
    "converge_journal",
    metadata,
    Column("seq", SEQ, primary_key=True, autoincrement=True),
    Column("root", ROOT, nullable=False),
    Column("kind", KIND, nullable=False),
    Column("id", OID, nullable=False),
    Column("op", String(8), nullable=False),
    Column("created_at", Double, nullable=False),
    Index(None, "root", "seq"),
    sqlite_autoincrement=True,  # never reuse a seq: the drain deletes rows by seq
)

status = Table(
    "converge_status",
    metadata,
    Column("id", OID, primary_key=True),  # first: lookups by a list of ids use the primary key
    Column("kind", KIND, primary_key=True),
    Column("root", ROOT, nullable=False),
    Column("bucket", SmallInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("pushed_digest", HEX, nullable=True),  # what the controller holds, as far as we know
    Column("error_digest", HEX, nullable=True),  # the desired digest the controller refused
    Column("message", Text, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("updated_at", Double, nullable=False),
    Index(None, "root", "state"),  # a root's objects in a state: a worker's pass
    Index(None, "state", "root"),  # the few objects not synced, across roots (expand 0002_status_state_root)
)

roots = Table(
    "converge_roots",
    metadata,
    Column("root", ROOT, primary_key=True),
    Column("acked", HEX, nullable=False, default=ZERO_HEX),  # fingerprint the controller last acknowledged
    Column("owner", String(64), nullable=True),
    Column("epoch", BigInteger, nullable=False, default=0),
    Column("expires_at", Double, nullable=True),
    Column("next_attempt_at", Double, nullable=False, default=0.0),
    Column("failures", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("synced_at", Double, nullable=True),
    Column("repair_requested", Double, nullable=True),  # set by an operator, cleared by the repair
    Index(None, "owner"),
)

workers = Table(
    "converge_workers",
    metadata,
    Column("worker", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Double, nullable=False),
    Column("heartbeat_at", Double, nullable=False),
)
