"""A task's grace period "not given" apart from a grace of 0: before, 0 meant "not given"
(the default, 10 s) and a grace of 0 could not be asked for. Those rows now hold -1, what
store/tasks.py writes for "not given"; 0 is a grace of 0 from now on.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE tasks SET grace_seconds = -1 WHERE grace_seconds = 0")


def downgrade() -> None:
    # A grace of 0 given since cannot be told apart afterwards: it becomes the default.
    op.execute("UPDATE tasks SET grace_seconds = 0 WHERE grace_seconds < 0")
