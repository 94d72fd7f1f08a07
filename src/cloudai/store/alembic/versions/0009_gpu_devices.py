"""GPU devices: a worker's device IDs, their telemetry and busy flags; the devices an
assignment holds. Self-contained: a worker row without IDs has devices 0..gpu-1.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("gpu_ids", sa.JSON, nullable=True))
        batch.add_column(sa.Column("gpu_stats", sa.JSON, nullable=True))
        batch.add_column(sa.Column("busy_gpu_ids", sa.JSON, nullable=True))
    with op.batch_alter_table("assignments") as batch:
        batch.add_column(sa.Column("gpu_ids", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("assignments") as batch:
        batch.drop_column("gpu_ids")
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("busy_gpu_ids")
        batch.drop_column("gpu_stats")
        batch.drop_column("gpu_ids")
