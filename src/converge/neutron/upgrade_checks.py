"""Converge's part of ``neutron-status upgrade check``: its tables and their migrations, its sync workers,
its journal.

Why: deployment tools run ``neutron-status upgrade check`` before and after an upgrade and stop on a
failure. Converge's tables live in Neutron's database but are migrated as the subproject
``networking-converge``; a Neutron server whose code needs an expand revision the database lacks fails in
every API call that records intent, so that is a failure here. Contract revisions still to apply, no live
sync worker and an old journal are warnings: nothing is lost (changes wait in the journal), but the
operator should know.

Loaded by neutron-status through the entry point ``neutron.status.upgrade.checks``
(``converge = converge.neutron.upgrade_checks:ConvergeChecks``), which calls each check with its checker.
The checks read Converge's store directly on ``[database] connection`` (no Neutron object, as
neutron-status asks of checks, so they also run against an older schema) and change nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from neutron_lib.utils import upgrade_checks
from oslo_config import cfg
from oslo_upgradecheck import upgradecheck
from sqlalchemy.engine import Connection

from converge.core.errors import ConfigurationError, DatabaseUnavailable
from converge.neutron import config
from converge.store import db, migrate, report

JOURNAL_AGE_WARNING = 60.0  # seconds: a healthy store drains a change in well under a second
SUBPROJECT = "networking-converge"
MANAGE = f"neutron-db-manage --subproject {SUBPROJECT}"

Result = upgradecheck.Result
Code = upgradecheck.Code


def on_store(check: Callable[[Connection], Result], url: str) -> Result:
    """Run ``check`` on a connection to ``url``: a failure if the database cannot be reached, a warning if
    no URL is configured (as Neutron's own checks do). A check that raises is a failure naming the error:
    neutron-status would otherwise stop at the traceback and run none of the checks after it."""
    if not url:
        return Result(Code.WARNING, "[database] connection is not set: Converge's store cannot be checked")
    try:
        engine = db.make_engine(url, pool_size=1)
    except ConfigurationError as err:
        return Result(Code.FAILURE, str(err))
    try:
        with db.translated(), engine.connect() as conn:
            return check(conn)
    except DatabaseUnavailable as err:
        return Result(Code.FAILURE, f"cannot read Converge's store: {err}")
    except Exception as err:  # noqa: BLE001 - reported as this check's failure, see above
        return Result(Code.FAILURE, f"the check failed: {type(err).__name__}: {err}")
    finally:
        engine.dispose()


def _listed(revisions: tuple[str, ...]) -> str:
    return ", ".join(revisions) or "none"


def schema(conn: Connection) -> Result:
    state = migrate.schema_state(conn)
    at = f"database at {_listed(state.current)}, this code's heads {_listed(state.heads)}"
    expand, contract = state.pending[migrate.Phase.EXPAND], state.pending[migrate.Phase.CONTRACT]
    match state.stage:
        case migrate.Stage.ABSENT:
            return Result(Code.FAILURE, f"Converge's tables are missing: run '{MANAGE} upgrade heads' "
                                        "(or 'neutron-db-manage upgrade heads' for every project)")
        case migrate.Stage.AHEAD:
            return Result(Code.FAILURE, f"the database holds revisions this code does not know "
                                        f"({_listed(state.unknown)}): newer Converge code migrated it; {at}")
        case migrate.Stage.BEHIND:
            return Result(Code.FAILURE, f"expand migrations missing ({_listed(expand)}): run '{MANAGE} upgrade "
                                        f"--expand' (online, with the servers running) before servers start "
                                        f"with this code; {at}")
        case migrate.Stage.CONTRACT_PENDING:
            return Result(Code.WARNING, f"contract migrations pending ({_listed(contract)}): run '{MANAGE} "
                                        f"upgrade --contract' once every Neutron server and sync worker runs "
                                        f"this code; {at}")
    return Result(Code.SUCCESS, f"at head: {at}")


def _tables_missing(conn: Connection) -> Result | None:
    if migrate.schema_state(conn).stage in (migrate.Stage.ABSENT, migrate.Stage.BEHIND):
        return Result(Code.WARNING, "not checked: Converge's schema is missing or behind (see its schema check)")
    return None


def workers(conn: Connection) -> Result:
    skipped = _tables_missing(conn)
    if skipped:
        return skipped
    known = report.workers_report(conn)
    within = cfg.CONF.converge.lease_duration
    live = [w for w in known if w.heartbeat_age < within]
    if live:
        return Result(Code.SUCCESS, f"{len(live)} live sync worker(s): " + ", ".join(
            f"{w.host} pid {w.pid} (heartbeat {w.heartbeat_age:.1f} s ago)" for w in live))
    if known:
        last = min(known, key=lambda w: w.heartbeat_age)
        return Result(Code.WARNING, f"no live sync worker (none heartbeat in the last {within:.0f} s; the last "
                                    f"was {last.host} pid {last.pid}, {last.heartbeat_age:.0f} s ago): changes "
                                    "wait in the journal until one runs (neutron-periodic-workers with [converge] "
                                    "sync_workers >= 1, or converge-agent)")
    return Result(Code.WARNING, "no sync worker has run on this database yet: changes wait in the journal until "
                                "one runs (neutron-periodic-workers with [converge] sync_workers >= 1, or "
                                "converge-agent)")


def journal(conn: Connection) -> Result:
    skipped = _tables_missing(conn)
    if skipped:
        return skipped
    t = report.totals(conn)
    objects = f"{t.errors} object(s) refused by the controller, {t.blocked} blocked"
    if t.pending and t.oldest_pending_age > JOURNAL_AGE_WARNING:
        return Result(Code.WARNING, f"{t.pending} change(s) pending, the oldest {t.oldest_pending_age:.0f} s old "
                                    f"(over {JOURNAL_AGE_WARNING:.0f} s): the workers are not keeping up or the "
                                    f"controller is failing ('converge status' says which); {objects}")
    if t.errors:
        return Result(Code.WARNING, f"{objects} ('converge journal' lists them); {t.pending} change(s) pending")
    if t.pending:
        return Result(Code.SUCCESS, f"{t.pending} change(s) pending, the oldest {t.oldest_pending_age:.1f} s old; "
                                    f"{objects}")
    return Result(Code.SUCCESS, f"journal drained; {objects}")


class ConvergeChecks(upgrade_checks.BaseChecks):  # type: ignore[misc]
    """The checks neutron-status runs for Converge (``get_checks``: name and callable pairs)."""

    def __init__(self) -> None:
        super().__init__()
        config.register(cfg.CONF)

    def get_checks(self) -> list[tuple[str, Callable[[Any], Result]]]:
        return [("Converge database schema", _run(schema)), ("Converge sync workers", _run(workers)),
                ("Converge journal", _run(journal))]


def _run(check: Callable[[Connection], Result]) -> Callable[[Any], Result]:
    """``check`` as neutron-status calls it: with its checker, on ``[database] connection``."""

    def run(_checker: Any) -> Result:
        return on_store(check, cfg.CONF.database.connection)

    return run
