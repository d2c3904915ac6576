"""Database plumbing: engines, the database clock, dialect-specific upserts, and the translation of
driver errors into the project's error tree (the only place that knows SQLAlchemy's exceptions).

Supported dialects: SQLite (one process; WAL, busy timeout) and MySQL/MariaDB through PyMySQL (many
processes; READ COMMITTED so our short worker transactions take no gap locks). Galera reports a
certification failure as a deadlock (1213): both mean "another writer won", i.e. :class:`RaceLost`.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, create_engine, event, exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.types import Double

from converge.core.errors import ConfigurationError, DatabaseUnavailable, RaceLost

log = logging.getLogger(__name__)
_bounded: weakref.WeakSet[Engine] = weakref.WeakSet()  # engines bound_waits() already set up

# MySQL error codes that mean a concurrent writer won: deadlock, lock wait timeout, Galera conflicts.
# 1047 ("WSREP has not yet prepared node for application use") is not among them: a Galera node that lost the
# cluster's quorum answers it to every statement until it rejoins, so it means "unavailable", not a race.
_RACE_CODES = {1213, 1205, 1180, 4031}


class db_now(FunctionElement[float]):  # noqa: N801 - reads like the SQL function it compiles to
    """The database server's clock as float seconds since the epoch (lease expiry is measured on it)."""

    type = Double()
    inherit_cache = True


@compiles(db_now)
def _now_default(element: db_now, compiler: Any, **kw: Any) -> str:
    # Only for printing a statement (str(stmt), SQL echo listeners): the dialects Converge runs on have
    # their own forms below.
    return "EXTRACT(EPOCH FROM CURRENT_TIMESTAMP)"


@compiles(db_now, "sqlite")
def _now_sqlite(element: db_now, compiler: Any, **kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


@compiles(db_now, "mysql")
@compiles(db_now, "mariadb")
def _now_mysql(element: db_now, compiler: Any, **kw: Any) -> str:
    return "CAST(UNIX_TIMESTAMP(NOW(6)) AS DOUBLE)"


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for Converge's own connections (workers, CLI); Neutron brings its own."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return create_engine(url, pool_size=pool_size, pool_pre_ping=True, pool_recycle=3600,
                             isolation_level="READ COMMITTED")
    except (exc.ArgumentError, exc.NoSuchModuleError, ValueError) as err:
        raise ConfigurationError(f"bad database URL: {err}") from None
    except ImportError as err:  # a dialect whose driver is not installed
        raise ConfigurationError(f"bad database URL: its driver is not installed ({err})") from None


def bound_waits(engine: Engine, *, lock_wait: int = 5, idle_write: int = 5) -> None:
    """Sessions of a sync worker on MySQL/MariaDB never wait long on another holder's rows, and never
    keep rows locked long when their own process stops talking (docs/design/scale-out.md).

    ``innodb_lock_wait_timeout``: a wait longer than ``lock_wait`` seconds is a hostage, not contention
    (every transaction of the sync side is a few statements): it becomes a lost race for that root.
    ``idle_write_transaction_timeout`` (MariaDB): the server rolls back a write transaction whose client
    has been silent for ``idle_write`` seconds — a process paused (SIGSTOP, a VM stall) between two
    statements — and frees its rows. Only for connections opened after the call; SQLite is left alone."""
    if engine.dialect.name not in ("mysql", "mariadb") or engine in _bounded:
        return
    _bounded.add(engine)

    def limit(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"SET SESSION innodb_lock_wait_timeout = {int(lock_wait)}")
            try:
                cur.execute(f"SET SESSION idle_write_transaction_timeout = {int(idle_write)}")
            except Exception:  # MySQL has no such variable: the lock wait bound still holds
                log.debug("this server has no idle_write_transaction_timeout", exc_info=True)
        finally:
            cur.close()

    event.listen(engine, "connect", limit)
    engine.dispose()  # connections already pooled were opened without the limits


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def is_race(err: BaseException) -> bool:
    if isinstance(err, exc.DBAPIError):
        orig = err.orig
        args = getattr(orig, "args", ())
        if args and isinstance(args[0], int) and args[0] in _RACE_CODES:
            return True
        return "database is locked" in str(orig)
    return False


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Turn driver errors that mean a lost race into :class:`RaceLost`, and a database that cannot be
    reached (or refuses the operation) into :class:`DatabaseUnavailable`; let the rest through."""
    try:
        yield
    except exc.DBAPIError as err:
        if is_race(err):
            raise RaceLost(f"database race: {err.orig}") from err
        # A server gone (OperationalError) or a connection the driver lost (InterfaceError, "(0, '')"); the
        # message is the driver's: it never holds the URL.
        if isinstance(err, exc.OperationalError | exc.InterfaceError) or err.connection_invalidated:
            raise DatabaseUnavailable(f"database unavailable: {err.orig}") from err
        raise


def upsert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], *,
           keys: Sequence[str], update: Sequence[str], fixed: Mapping[str, Any] | None = None) -> None:
    """Insert ``rows``, or update the ``update`` columns of rows whose primary key ``keys`` exist.

    ``fixed`` gives SQL expressions shared by every row (e.g. ``updated_at=db_now()``).
    """
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        ins = sqlite_insert(table).values(**(fixed or {}))
        stmt: Any = ins.on_conflict_do_update(index_elements=list(keys),
                                         set_={c: ins.excluded[c] for c in update})
    elif dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        mins = mysql_insert(table).values(**(fixed or {}))
        stmt = mins.on_duplicate_key_update({c: mins.inserted[c] for c in update})
    else:  # pragma: no cover - guarded by make_engine's users
        raise ConfigurationError(f"unsupported database dialect {dialect!r}")
    conn.execute(stmt, list(rows))


def insert_missing(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows whose primary key is not there yet; leave existing rows alone."""
    if not rows:
        return
    stmt = table.insert().prefix_with("OR IGNORE" if conn.dialect.name == "sqlite" else "IGNORE")
    conn.execute(stmt, list(rows))
