"""Schema management: run Converge's Alembic migrations against a URL or an open connection.

Called by the CLI (``converge db upgrade``, and implicitly by ``sync run``/``load`` on SQLite), tests and
benchmarks. The same scripts will serve Neutron's ``neutron-db-manage`` as a branch.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from converge.store import db

SCRIPTS = "converge.store:migrations"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPTS)
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    cfg = alembic_config()
    with db.translated(), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")
