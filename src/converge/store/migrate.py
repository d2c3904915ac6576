"""Schema management: run Converge's Alembic migrations, and say where a database stands against them.

The scripts (``converge/store/migrations``) are laid out as Neutron's subprojects lay theirs out, so
``neutron-db-manage --subproject networking-converge upgrade --expand`` / ``--contract`` drive them in a
Neutron database: ``versions/0001_initial.py`` is the branchless start, and two branches hang off it,
``expand`` (adds only: tables, columns, indexes; applied with every server running) and ``contract``
(drops or tightens; applied once every server and worker runs the code that no longer needs it), each in
``versions/<release>/expand|contract``; ``versions/EXPAND_HEAD`` and ``CONTRACT_HEAD`` name their heads
for ``neutron-db-manage check_migration``. Both use Converge's own version table, never Neutron's.

Called by the CLI (``converge db upgrade``, and implicitly by the other commands), tests and benchmarks
to apply them without Neutron; by the Neutron-side upgrade check (:func:`schema_state`) to report.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine

from converge.store import db

_T = TypeVar("_T")

SCRIPTS = "converge.store:migrations"
VERSION_TABLE = "converge_alembic_version"
VERSIONS = Path(__file__).parent / "migrations" / "versions"


class Phase(enum.StrEnum):
    """A branch of the history, as ``neutron-db-manage upgrade --expand|--contract`` names it."""

    EXPAND = "expand"
    CONTRACT = "contract"

    @property
    def target(self) -> str:
        return f"{self.value}@head"


def version_locations() -> list[Path]:
    """The start's folder, then every ``<release>/expand|contract`` folder, oldest release first (Neutron's
    ``neutron-db-manage`` lists the same folders itself)."""
    branches = sorted(p for p in VERSIONS.glob("*/*") if p.is_dir() and p.name in set(Phase))
    return [VERSIONS, *branches]


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPTS)
    cfg.set_main_option("path_separator", "os")  # version_locations below: one path per os.pathsep
    cfg.set_main_option("version_locations", os.pathsep.join(str(p) for p in version_locations()))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, phase: Phase | None = None) -> None:
    """Bring the schema to the newest revision of both branches, or of ``phase``'s alone (idempotent). A
    database with nothing to apply is left alone without running Alembic (whose INFO lines every CLI
    command and worker start would otherwise print)."""
    cfg = alembic_config()
    with db.translated(), engine.begin() as conn:
        if _nothing_to_do(schema_state(conn), phase):
            return
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, phase.target if phase else "heads")


def _nothing_to_do(state: SchemaState, phase: Phase | None) -> bool:
    if state.stage in (Stage.ABSENT, Stage.BEHIND, Stage.AHEAD):
        return False  # apply (absent, behind), or let Alembic refuse revisions it does not know (ahead)
    return not any(state.pending[p] for p in ((phase,) if phase else tuple(Phase)))


def upgrade_to(engine: Engine, revision: str) -> None:
    """Bring the schema to one named revision: tests build a database as an older release left it."""
    cfg = alembic_config()
    with db.translated(), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


class Stage(enum.StrEnum):
    """Where a database stands against this code's migrations."""

    ABSENT = "absent"  # no Converge tables: never migrated
    BEHIND = "behind"  # an expand revision is missing: this code cannot run on it
    CONTRACT_PENDING = "contract pending"  # expanded; contract revisions wait for every server to run this code
    CURRENT = "current"  # at both heads
    AHEAD = "ahead"  # it holds revisions this code does not know: newer code migrated it


@dataclass(frozen=True)
class SchemaState:
    stage: Stage
    current: tuple[str, ...]  # revisions in the version table
    heads: tuple[str, ...]  # this code's heads (expand, contract)
    pending: dict[Phase, tuple[str, ...]]  # revisions not applied yet, per branch, oldest first
    unknown: tuple[str, ...]  # revisions in the version table this code does not know


def _quietly(read: Callable[[], _T]) -> _T:
    """Run ``read`` without Alembic's INFO lines ("Context impl …"): a look at the version table is no news."""
    logger = logging.getLogger("alembic.runtime.migration")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        return read()
    finally:
        logger.setLevel(level)


def _phase(script: Script) -> Phase | None:
    parts = Path(script.path).parts
    return next((phase for phase in Phase if phase.value in parts), None)


def schema_state(conn: Connection) -> SchemaState:
    """Read the version table (one SELECT) and compare it with the scripts; changes nothing."""
    scripts = ScriptDirectory.from_config(alembic_config())
    heads = tuple(sorted(scripts.get_heads()))
    with db.translated():
        present = inspect(conn).has_table(VERSION_TABLE)
        current = _quietly(lambda: MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
                           .get_current_heads()) if present else ()
    known = {s.revision for s in scripts.walk_revisions()}
    unknown = tuple(sorted(set(current) - known))
    applied: set[str] = set()
    for rev in set(current) & known:
        applied.update(s.revision for s in scripts.iterate_revisions(rev, "base"))
    oldest_first = list(reversed(list(scripts.walk_revisions())))
    pending = {phase: tuple(s.revision for s in oldest_first if s.revision not in applied and _phase(s) is phase)
               for phase in Phase}
    if unknown:
        stage = Stage.AHEAD
    elif not current:
        stage = Stage.ABSENT
    elif pending[Phase.EXPAND] or any(s.revision not in applied and _phase(s) is None for s in oldest_first):
        stage = Stage.BEHIND
    elif pending[Phase.CONTRACT]:
        stage = Stage.CONTRACT_PENDING
    else:
        stage = Stage.CURRENT
    return SchemaState(stage=stage, current=tuple(sorted(current)), heads=heads, pending=pending, unknown=unknown)
