"""An index on converge_status (state, root): objects in error or blocked found without reading the others.

Who gains: ``blocked_roots`` (a worker's look for roots with blocked objects, every few seconds), the
error and blocked counts of ``converge status`` and of the metrics' totals, and ``converge journal``'s
list of refused objects. With only (root, state) each of them reads the whole table's index — one entry
per object, ~200,000 at 100k ports — to find the few rows not synced; with (state, root) they read those
rows alone. (root, state) stays: the per-root reads of a worker's pass use it.

Expand only: a new index, which code older than it neither needs nor notices, so it runs with the API
servers and sync workers up. MariaDB builds a secondary index in place without blocking writes (the
default ALGORITHM=INPLACE, LOCK=NONE for InnoDB); only the short metadata locks at its start and end wait
for transactions open on the table (workers' status writes: a few statements each). On Galera the DDL is
replicated in total order (TOI) and holds the cluster's writes to the table while the index is built:
seconds at this size. Neutron's ``neutron.db.migration`` helpers are not used: they address Neutron's
tables, and these scripts also run without Neutron (``converge db upgrade``).

Revision ID: 0002_status_state_root
Revises: 0001_initial
Create Date: 2026-11-27
"""

from alembic import op

revision = "0002_status_state_root"
down_revision = "0001_initial"
branch_labels = ("expand",)
depends_on = None


def upgrade() -> None:
    op.create_index("ix_converge_status_state_root", "converge_status", ["state", "root"])
