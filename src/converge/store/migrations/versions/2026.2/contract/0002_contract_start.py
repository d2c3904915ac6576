"""The contract branch's start: nothing to drop or tighten yet.

``neutron-db-manage`` expects a subproject to have both an ``expand`` and a ``contract`` head (its
``upgrade --contract``, ``has_offline_migrations`` and ``check_migration`` look both up), so the branch
starts with this empty revision, as networking-* projects began theirs. A later contract revision drops
or tightens what new code no longer uses; it runs only when every Neutron server and sync worker runs
code that no longer needs it.

This one changes nothing, so applying it with servers running is safe, although
``has_offline_migrations`` reports it as pending until it is applied (that command compares heads only).

Revision ID: 0002_contract_start
Revises: 0001_initial
Create Date: 2026-11-27
"""

revision = "0002_contract_start"
down_revision = "0001_initial"
branch_labels = ("contract",)
depends_on = None


def upgrade() -> None:
    pass
