"""cancellations: the record of each cancel and how far its stop has got.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cancellations",
        sa.Column("task_id", sa.String(64), sa.ForeignKey("tasks.task_id"), primary_key=True),
        sa.Column("worker_id", sa.String(64), nullable=True),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("requested_at", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("force", sa.Boolean, nullable=False),
        sa.Column("grace_seconds", sa.Float, nullable=False),
        sa.Column("stop_signal", sa.String(16), nullable=False),
        sa.Column("delivered_at", sa.Float, nullable=True),
        sa.Column("delivery_attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("signal_at", sa.Float, nullable=True),
        sa.Column("killed_at", sa.Float, nullable=True),
        sa.Column("exited_at", sa.Float, nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("forced", sa.Boolean, nullable=False),
        sa.Column("removed_at", sa.Float, nullable=True),
        sa.Column("stop_error", sa.Text, nullable=False),
    )
    op.create_index("ix_cancellations_open", "cancellations", ["worker_id", "removed_at"])
    op.create_index("ix_tasks_owner", "tasks", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_tasks_owner", "tasks")
    op.drop_index("ix_cancellations_open", "cancellations")
    op.drop_table("cancellations")
