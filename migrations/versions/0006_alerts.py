"""alerts: task notify rules, notify_events and notify_deliveries

Revision ID: 0006_alerts
Revises: 0005_run_limits_and_cost
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from schedd.types import UTCDateTime

revision: str = "0006_alerts"
down_revision: str | None = "0005_run_limits_and_cost"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_PENDING = sa.text("state = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("notify", _JSON, nullable=False, server_default=sa.text("'{}'")))
    op.create_table(
        "notify_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("details", _JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_notify_events_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_events")),
        sa.UniqueConstraint("key", name=op.f("uq_notify_events_key")),
    )
    op.create_index(
        "ix_notify_events_task_id_event_id", "notify_events", ["task_id", "event", "id"]
    )
    op.create_index(op.f("ix_notify_events_created_at"), "notify_events", ["created_at"])
    op.create_index("ix_notify_events_run_id_event", "notify_events", ["run_id", "event"])
    op.create_table(
        "notify_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("digest_id", sa.Integer(), nullable=True),
        sa.Column("digest_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["notify_events.id"],
            name=op.f("fk_notify_deliveries_event_id_notify_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["digest_id"],
            ["notify_deliveries.id"],
            name=op.f("fk_notify_deliveries_digest_id_notify_deliveries"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_deliveries")),
        sa.UniqueConstraint(
            "event_id", "channel", name=op.f("uq_notify_deliveries_event_id_channel")
        ),
    )
    op.create_index(
        "ix_notify_deliveries_pending",
        "notify_deliveries",
        ["channel", "next_attempt_at"],
        sqlite_where=_PENDING,
        postgresql_where=_PENDING,
    )
    op.create_index(
        "ix_notify_deliveries_channel_sent_at", "notify_deliveries", ["channel", "sent_at"]
    )
    op.create_index(op.f("ix_notify_deliveries_created_at"), "notify_deliveries", ["created_at"])
    op.create_index(op.f("ix_notify_deliveries_digest_id"), "notify_deliveries", ["digest_id"])


def downgrade() -> None:
    op.drop_table("notify_deliveries")
    op.drop_table("notify_events")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("notify")
