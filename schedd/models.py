"""Database tables (SQLModel) and the enums they use.

Field names follow the seed's data model exactly; additions are documented inline.
Schema changes go through Alembic migrations only (``migrations/``); a test fails
when these models and the migrations drift apart.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from schedd.types import UTCDateTime, json_type, utcnow

# Naming convention so that migrations name constraints the same on every dialect.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Executor(StrEnum):
    shell = "shell"
    python = "python"
    http = "http"
    function = "function"


class Priority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    critical = "critical"

    @property
    def rank(self) -> int:
        """Higher claims first: critical 3 > high 2 > normal 1 > low 0."""
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.low: 0, Priority.normal: 1, Priority.high: 2, Priority.critical: 3}


class TaskStatus(StrEnum):
    active = "active"
    paused = "paused"


class ConcurrencyPolicy(StrEnum):
    allow = "allow"
    forbid = "forbid"
    replace = "replace"  # type: ignore[assignment]  # shadows str.replace; the value is the contract


class MisfirePolicy(StrEnum):
    fire_once = "fire_once"
    skip = "skip"
    fire_all = "fire_all"


class RunStatus(StrEnum):
    waiting = "waiting"  # created, not yet claimable (a retry waiting out its delay)
    pending = "pending"  # claimable; handed to the broker
    running = "running"
    completed = "completed"
    failed = "failed"
    timeout = "timeout"
    cancelled = "cancelled"
    lost = "lost"
    skipped = "skipped"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_RUN_STATUSES


TERMINAL_RUN_STATUSES = frozenset(
    {
        RunStatus.completed,
        RunStatus.failed,
        RunStatus.timeout,
        RunStatus.cancelled,
        RunStatus.lost,
        RunStatus.skipped,
    }
)
ACTIVE_RUN_STATUSES = frozenset({RunStatus.waiting, RunStatus.pending, RunStatus.running})


class Trigger(StrEnum):
    schedule = "schedule"
    manual = "manual"
    dependency = "dependency"
    retry = "retry"


class WorkerStatus(StrEnum):
    active = "active"
    draining = "draining"
    offline = "offline"


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(
        default=None,
        sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index),
    )


def _created() -> Any:
    return Field(default_factory=utcnow, sa_column=sa.Column(UTCDateTime(), nullable=False))


def _json(default_factory: Any) -> Any:
    return Field(default_factory=default_factory, sa_column=sa.Column(json_type(), nullable=False))


class Task(SQLModel, table=True):
    """A job definition: what to run, how, and when."""

    __tablename__ = "tasks"
    __table_args__ = (
        # The scheduler's hot path: due active tasks ordered by next_run_at.
        sa.Index("ix_tasks_due", "status", "next_run_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    description: str = Field(default="", sa_type=sa.Text)
    task_type: str = Field(max_length=64)
    executor: str = Field(max_length=16)
    command: str = Field(sa_type=sa.Text)
    arguments: list[str] = _json(list)
    schedule: str | None = Field(default=None, max_length=256)
    timezone: str = Field(default="UTC", max_length=64)
    priority: str = Field(default=Priority.normal.value, max_length=16)
    retry_count: int = Field(default=0)
    retry_delay_seconds: float = Field(default=10.0)
    timeout_seconds: int | None = Field(default=None)
    status: str = Field(default=TaskStatus.active.value, max_length=16)
    concurrency_policy: str = Field(default=ConcurrencyPolicy.allow.value, max_length=16)
    misfire_policy: str = Field(default=MisfirePolicy.fire_once.value, max_length=16)
    tags: list[str] = _json(list)
    # "metadata" is reserved by SQLAlchemy's declarative base; the column keeps the name.
    metadata_: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column("metadata", json_type(), nullable=False)
    )
    created_at: datetime = _created()
    updated_at: datetime = _created()
    last_run_at: datetime | None = _ts()
    next_run_at: datetime | None = _ts()
    # Addition beyond the seed: when the task was paused (NULL while active), so that
    # resuming a fire_all task can replay the fire times it missed while paused.
    paused_at: datetime | None = _ts()
    # Variables added to the run's allowlisted environment (name -> value). The server
    # default keeps rows written by older code (and raw inserts) valid.
    environment: dict[str, str] = Field(
        default_factory=dict,
        sa_column=sa.Column(json_type(), nullable=False, server_default=sa.text("'{}'")),
    )
    # The user (user[:group]) runs execute as, from the worker's allowed_run_as; None:
    # the worker's run_as. The directory runs start in; None: the run user's home.
    run_as: str | None = Field(default=None, max_length=65)
    working_dir: str | None = Field(default=None, max_length=4096)
    # Limits the run's cgroup enforces; None: unlimited.
    memory_max_mb: int | None = Field(default=None)
    cpu_max: float | None = Field(default=None)  # cores
    pids_max: int | None = Field(default=None)
    # Alert rules (:mod:`schedd.alerts.rules`): event -> channel names, and options.
    notify: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=sa.Column(json_type(), nullable=False, server_default=sa.text("'{}'")),
    )


class TaskDependency(SQLModel, table=True):
    """Edge task_id -> depends_on_id: task_id runs after depends_on_id completes.

    Stored as rows (not a JSON list) so the database refuses edges to missing tasks and
    the scheduler can find a task's dependents with an index.
    """

    __tablename__ = "task_dependencies"

    task_id: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
        )
    )
    depends_on_id: int = Field(
        sa_column=sa.Column(
            sa.Integer,
            sa.ForeignKey("tasks.id", ondelete="RESTRICT"),
            primary_key=True,
            index=True,
        )
    )


class TaskRun(SQLModel, table=True):
    """One execution (attempt) of a task."""

    __tablename__ = "task_runs"
    __table_args__ = (
        # A scheduled time (or a dependency release) fires at most once per task, however
        # many schedulers race for it.
        sa.Index(
            "uq_task_runs_task_id_scheduled_for",
            "task_id",
            "scheduled_for",
            unique=True,
            sqlite_where=sa.text("\"trigger\" IN ('schedule', 'dependency')"),
            postgresql_where=sa.text("\"trigger\" IN ('schedule', 'dependency')"),
        ),
        # Claim order: claimable runs by priority then age.
        sa.Index("ix_task_runs_claim", "status", "task_type", "priority", "id"),
        sa.Index("ix_task_runs_task_id_id", "task_id", "id"),
        sa.Index("ix_task_runs_worker_id_status", "worker_id", "status"),
        sa.Index("ix_task_runs_created_at", "created_at"),
        # Overlap checks (a task's active runs) and dependency joins (an upstream's
        # newest completed run) without walking a task's whole history.
        sa.Index("ix_task_runs_task_id_status_completed_at", "task_id", "status", "completed_at"),
        # Outbox sweeper: only pending runs, oldest hand-over first.
        sa.Index(
            "ix_task_runs_pending_dispatched_at",
            "dispatched_at",
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        ),
        # Retry candidates: recently ended runs that may be retried.
        sa.Index(
            "ix_task_runs_retryable_completed_at",
            "completed_at",
            sqlite_where=sa.text("status IN ('failed', 'timeout', 'lost')"),
            postgresql_where=sa.text("status IN ('failed', 'timeout', 'lost')"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False
        )
    )
    worker_id: str | None = Field(default=None, max_length=200)
    status: str = Field(default=RunStatus.pending.value, max_length=16)
    started_at: datetime | None = _ts()
    completed_at: datetime | None = _ts()
    result: str | None = Field(default=None, sa_type=sa.Text)
    error_message: str | None = Field(default=None, sa_type=sa.Text)
    retry_count: int = Field(default=0)  # attempt number, 0 first
    exit_code: int | None = Field(default=None)
    execution_time: float | None = Field(default=None)
    scheduled_for: datetime | None = _ts()
    trigger: str = Field(default=Trigger.manual.value, max_length=16)
    created_at: datetime = _created()
    # Additions beyond the seed:
    task_type: str = Field(max_length=64)  # copied from the task: routing key
    priority: int = Field(default=1)  # Priority.rank, copied from the task
    arguments: list[str] | None = Field(
        default=None, sa_column=sa.Column(json_type(), nullable=True)
    )  # per-run override from a manual trigger; None = the task's
    not_before: datetime | None = _ts()  # a waiting run becomes pending at this time
    claim: int = Field(default=0)  # incremented at each claim: part of the write fence
    dispatched_at: datetime | None = _ts()  # last hand-over to the broker (outbox)
    heartbeat_at: datetime | None = _ts()  # last progress report by its worker
    cancel_requested: bool = Field(default=False)
    # What the run cost: its cgroup's counters, or wait4 rusage without a cgroup.
    cpu_seconds: float | None = Field(default=None)
    max_rss_mb: float | None = Field(default=None)
    # W3C traceparent of the span that created the run (tracing on), else None.
    trace_context: str | None = Field(default=None, max_length=64)
    parent_run_id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Integer,
            sa.ForeignKey("task_runs.id", ondelete="SET NULL"),
            nullable=True,
            unique=True,  # a run is retried at most once, however many reapers race
        ),
    )
    output_bytes: int = Field(default=0)  # bytes of output seen (before the cap)


class RunOutput(SQLModel, table=True):
    """Captured output of a run, stored in ordered chunks so it can be followed."""

    __tablename__ = "run_output"
    __table_args__ = (sa.UniqueConstraint("run_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("task_runs.id", ondelete="CASCADE"), nullable=False
        )
    )
    seq: int
    offset: int  # byte offset of this chunk in the stored output
    data: str = Field(sa_type=sa.Text)
    created_at: datetime = _created()


class Worker(SQLModel, table=True):
    """A worker process, as it registered and last reported."""

    __tablename__ = "workers"

    id: str = Field(primary_key=True, max_length=200)
    hostname: str = Field(max_length=255)
    ip_address: str | None = Field(default=None, max_length=64)
    port: int | None = Field(default=None)
    task_types: list[str] = _json(list)
    max_concurrent_tasks: int = Field(default=5)
    current_task_count: int = Field(default=0)
    status: str = Field(default=WorkerStatus.active.value, max_length=16, index=True)
    last_heartbeat: datetime | None = _ts()
    registered_at: datetime = _created()
    load_average: float | None = Field(default=None)
    memory_usage: float | None = Field(default=None)  # MB
    cpu_usage: float | None = Field(default=None)  # percent
    # Additions beyond the seed:
    executor_types: list[str] = _json(list)
    pid: int | None = Field(default=None)
    version: str | None = Field(default=None, max_length=32)
    # How its runs are isolated: cgroup2, hybrid (one cgroup per run) or none.
    isolation: str | None = Field(default=None, max_length=16)


class ApiKey(SQLModel, table=True):
    """An API key. Only its SHA-256 hash is stored; the key itself is shown once."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    prefix: str = Field(max_length=32)  # first characters, to recognise a key in lists
    key_hash: str = Field(max_length=64, unique=True)
    scopes: list[str] = _json(list)
    created_at: datetime = _created()
    created_by: str | None = Field(default=None, max_length=200)
    expires_at: datetime | None = _ts()
    revoked_at: datetime | None = _ts()
    last_used_at: datetime | None = _ts()


class SystemLog(SQLModel, table=True):
    """A stored system event (fires, failures, workers going offline, config problems)."""

    __tablename__ = "system_logs"
    __table_args__ = (sa.Index("ix_system_logs_time_level", "time", "levelno"),)

    id: int | None = Field(default=None, primary_key=True)
    time: datetime = _created()
    level: str = Field(max_length=16)
    levelno: int = Field(default=20)  # for "level at or above" filters
    component: str = Field(max_length=64, index=True)
    message: str = Field(sa_type=sa.Text)
    refs: dict[str, Any] = _json(dict)  # task_id, run_id, worker_id as relevant


class AuditEntry(SQLModel, table=True):
    """Who did what to which object, when, and how it ended."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    time: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime(), nullable=False, index=True)
    )
    actor: str = Field(max_length=200)
    action: str = Field(max_length=64)
    target: str = Field(max_length=200)
    outcome: str = Field(default="ok", max_length=32)
    detail: dict[str, Any] = _json(dict)


class Lease(SQLModel, table=True):
    """A named, expiring lock row (the single SQLite scheduler, singleton jobs)."""

    __tablename__ = "leases"

    name: str = Field(primary_key=True, max_length=100)
    holder: str = Field(max_length=200)
    expires_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class NotifyEvent(SQLModel, table=True):
    """Something to tell an operator: a run failed, a task went silent...

    ``key`` is unique per (event, task, run or window), so schedulers and notifiers that
    see the same outcome record one event.
    """

    __tablename__ = "notify_events"
    __table_args__ = (
        sa.Index("ix_notify_events_task_id_event_id", "task_id", "event", "id"),
        # "Has this run's outcome been recorded?" while scanning outcomes.
        sa.Index("ix_notify_events_run_id_event", "run_id", "event"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)
    event: str = Field(max_length=32)
    task_id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=True
        ),
    )
    run_id: int | None = Field(default=None)  # no foreign key: retention may delete runs
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime(), nullable=False, index=True)
    )
    details: dict[str, Any] = _json(dict)  # what the message says (task, status, output...)


class NotifyDelivery(SQLModel, table=True):
    """One event (or one digest of events) to send to one channel, and how that went."""

    __tablename__ = "notify_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("event_id", "channel"),
        # The sender's queue: due deliveries by channel, oldest first.
        sa.Index(
            "ix_notify_deliveries_pending",
            "channel",
            "next_attempt_at",
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        ),
        # Messages sent to a channel in the last minute (max_per_minute).
        sa.Index("ix_notify_deliveries_channel_sent_at", "channel", "sent_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("notify_events.id", ondelete="CASCADE"), nullable=True
        ),
    )
    channel: str = Field(max_length=64)
    state: str = Field(default="pending", max_length=16)  # pending sent failed digested
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime(), nullable=False, index=True)
    )
    sent_at: datetime | None = _ts()
    # A digest is a delivery without an event; the deliveries it collapsed point to it.
    digest_id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Integer,
            sa.ForeignKey("notify_deliveries.id", ondelete="SET NULL"),
            nullable=True,
            index=True,
        ),
    )
    digest_count: int = Field(default=0)
