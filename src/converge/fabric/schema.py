"""The controller's SQLite schema and how its database file is opened.

One file in WAL mode with ``synchronous=NORMAL``: a commit is a sequential append to the WAL, so a batch
costs one small write and survives a process crash (a power cut may lose the last commits, which the sync
engine's fingerprints then reveal and repair, as they would on a real controller). Called by
``state.Store.open`` only; the tables are:

- ``objects``: one row per object, its root, bucket, canonical JSON, digest (64 hex) and port status;
- ``refs``: child -> parent references, keyed by the child so a replace or delete drops its rows fast;
- ``roots`` and ``buckets``: per-root fingerprint and count, per-(root, bucket) sum and count, maintained
  incrementally by every write (never recomputed) and loaded into memory at startup;
- ``fences``: per root, the highest lease epoch a batch was applied with (``fence.py``);
- ``audit``: every batch attempt with the epoch it carried, bounded to the most recent ``AUDIT_KEEP``
  entries;
- ``meta``: small counters that must survive restarts (the event sequence).

Version 2 added ``fences`` and ``audit.epoch``; a version 1 file is upgraded in place when opened (the
table is created, the column added, its old entries' epoch null), so a controller keeps its database.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 2
UPGRADABLE = (0, 1)  # 0: a new file
AUDIT_KEEP = 200_000

DDL = """
CREATE TABLE IF NOT EXISTS objects (
    kind    TEXT NOT NULL,
    id      TEXT NOT NULL,
    root    TEXT NOT NULL,
    bucket  INTEGER NOT NULL,
    doc     BLOB NOT NULL,
    digest  TEXT NOT NULL,
    status  TEXT,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS objects_by_root ON objects (root, kind, id);
CREATE INDEX IF NOT EXISTS objects_by_bucket ON objects (root, bucket);

CREATE TABLE IF NOT EXISTS refs (
    child_kind  TEXT NOT NULL,
    child_id    TEXT NOT NULL,
    parent_kind TEXT NOT NULL,
    parent_id   TEXT NOT NULL,
    PRIMARY KEY (child_kind, child_id, parent_kind, parent_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS roots (
    root        TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    objects     INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS buckets (
    root    TEXT NOT NULL,
    bucket  INTEGER NOT NULL,
    sum     TEXT NOT NULL,
    objects INTEGER NOT NULL,
    PRIMARY KEY (root, bucket)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS audit (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    time       REAL NOT NULL,
    root       TEXT NOT NULL,
    writer     TEXT,
    if_match   TEXT,
    status     INTEGER NOT NULL,
    operations INTEGER NOT NULL,
    etag       TEXT NOT NULL,
    epoch      INTEGER
);

CREATE TABLE IF NOT EXISTS fences (
    root  TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""


class SchemaMismatch(RuntimeError):
    """The database file was written by a different schema version of the controller."""


def connect(path: Path | str) -> sqlite3.Connection:
    """Open (creating if needed) the database at ``path`` with the pragmas the controller relies on."""
    # isolation_level=None: the store issues BEGIN IMMEDIATE / COMMIT itself, so a batch is exactly
    # one transaction and nothing is committed behind its back.
    conn = sqlite3.connect(str(path), isolation_level=None)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        conn.close()
        raise RuntimeError(f"{path}: SQLite refused WAL mode (got {mode!r})")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA temp_store=MEMORY")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version != SCHEMA_VERSION and version not in UPGRADABLE:
        conn.close()
        raise SchemaMismatch(f"{path}: schema version {version}, this controller writes {SCHEMA_VERSION}")
    conn.executescript(DDL)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(audit)")}
    if "epoch" not in columns:  # a version 1 file: CREATE TABLE IF NOT EXISTS kept its old audit table
        conn.execute("ALTER TABLE audit ADD COLUMN epoch INTEGER")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return conn
