"""Tasks indexed by (owner, status): a submit counts the owner's pending tasks (the
per-user limit) without reading every task the owner ever had (issue 13).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tasks_owner_status", "tasks", ["owner", "status"])
    op.drop_index("ix_tasks_owner", table_name="tasks")


def downgrade() -> None:
    op.create_index("ix_tasks_owner", "tasks", ["owner"])
    op.drop_index("ix_tasks_owner_status", table_name="tasks")
