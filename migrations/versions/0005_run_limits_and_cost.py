"""run limits and cost: task memory/cpu/pids limits, run cpu_seconds and max_rss_mb

Revision ID: 0005_run_limits_and_cost
Revises: 0004_worker_isolation
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_run_limits_and_cost"
down_revision: str | None = "0004_worker_isolation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("memory_max_mb", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("cpu_max", sa.Float(), nullable=True))
        batch.add_column(sa.Column("pids_max", sa.Integer(), nullable=True))
    with op.batch_alter_table("task_runs") as batch:
        batch.add_column(sa.Column("cpu_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("max_rss_mb", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_runs") as batch:
        batch.drop_column("max_rss_mb")
        batch.drop_column("cpu_seconds")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("pids_max")
        batch.drop_column("cpu_max")
        batch.drop_column("memory_max_mb")
