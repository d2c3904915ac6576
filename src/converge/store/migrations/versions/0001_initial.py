"""Initial Converge tables: desired, journal, status, roots, workers.

The start of Converge's history and the root its two branches hang off (``expand`` and ``contract``,
in ``versions/<release>/``): branchless, as ``neutron-db-manage check_migration`` wants the scripts outside
those folders. It carried the branch label ``converge`` until the branches came; a database stamped with it
(by ``neutron-db-manage`` or ``converge db upgrade``) holds only the revision id, which is unchanged.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "converge_desired",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("root", sa.String(128), nullable=False),
        sa.Column("attributes", sa.Text, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", "kind", name="pk_converge_desired"),
    )
    op.create_index("ix_converge_desired_root", "converge_desired", ["root"])
    op.create_table(
        "converge_journal",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("root", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_converge_journal"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_converge_journal_root_seq", "converge_journal", ["root", "seq"])
    op.create_table(
        "converge_status",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("root", sa.String(128), nullable=False),
        sa.Column("bucket", sa.SmallInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("pushed_digest", sa.String(64), nullable=True),
        sa.Column("error_digest", sa.String(64), nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("id", "kind", name="pk_converge_status"),
    )
    op.create_index("ix_converge_status_root_state", "converge_status", ["root", "state"])
    op.create_table(
        "converge_roots",
        sa.Column("root", sa.String(128), nullable=False),
        sa.Column("acked", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=True),
        sa.Column("next_attempt_at", sa.Double, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("synced_at", sa.Double, nullable=True),
        sa.Column("repair_requested", sa.Double, nullable=True),
        sa.PrimaryKeyConstraint("root", name="pk_converge_roots"),
    )
    op.create_index("ix_converge_roots_owner", "converge_roots", ["owner"])
    op.create_table(
        "converge_workers",
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("heartbeat_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("worker", name="pk_converge_workers"),
    )
