"""task run_as and working_dir: the user and directory a task's runs start as and in

Revision ID: 0003_task_run_as
Revises: 0002_task_environment
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003_task_run_as"
down_revision: str | None = "0002_task_environment"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column("run_as", sqlmodel.sql.sqltypes.AutoString(length=65), nullable=True)
        )
        batch.add_column(
            sa.Column("working_dir", sqlmodel.sql.sqltypes.AutoString(length=4096), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("working_dir")
        batch.drop_column("run_as")
