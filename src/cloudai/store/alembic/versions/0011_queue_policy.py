"""Task policy (priority, preemptible, time limit, retries), the run number, and the
task_attempts table (issue 12).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("priority", sa.Integer, nullable=False, server_default="500"),
        sa.Column("preemptible", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("timeout_seconds", sa.Float, nullable=True),
        sa.Column("retries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("retry_on_timeout", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
        sa.Column("not_before", sa.Float, nullable=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        for column in _columns():
            batch.add_column(column)
    op.create_table(
        "task_attempts",
        sa.Column("task_id", sa.String(64), sa.ForeignKey("tasks.task_id"), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("worker_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("oom_killed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("gpu_ids", sa.JSON, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("task_attempts")
    with op.batch_alter_table("tasks") as batch:
        for column in reversed(_columns()):
            batch.drop_column(column.name)
