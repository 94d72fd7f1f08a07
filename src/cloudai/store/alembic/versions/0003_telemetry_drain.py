"""Node telemetry and drain on workers; last measured usage on tasks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(
            sa.Column("drained", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("cpu_percent", sa.Float, nullable=True))
        batch.add_column(sa.Column("mem_used_gb", sa.Float, nullable=True))
        batch.add_column(sa.Column("disk_free_gb", sa.Float, nullable=True))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("cpu_percent", sa.Float, nullable=True))
        batch.add_column(sa.Column("mem_used_gb", sa.Float, nullable=True))
        batch.add_column(sa.Column("usage_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        for name in ("usage_at", "mem_used_gb", "cpu_percent"):
            batch.drop_column(name)
    with op.batch_alter_table("workers") as batch:
        for name in ("disk_free_gb", "mem_used_gb", "cpu_percent", "drained"):
            batch.drop_column(name)
