"""Run and worker response models, a worker's heartbeat body and a slice of a run's
output."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from schedd.schemas.common import NUMBERS, json_numbers


class RunRead(BaseModel):
    """A run as the API shows it (the seed's TaskRun shape plus additions)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    task_id: int
    worker_id: str | None
    status: str
    started_at: datetime | None
    completed_at: datetime | None
    result: str | None
    error_message: str | None
    retry_count: int
    exit_code: int | None
    execution_time: float | None
    scheduled_for: datetime | None
    trigger: str
    created_at: datetime
    task_type: str
    priority: int
    arguments: list[str] | None
    not_before: datetime | None
    cancel_requested: bool
    parent_run_id: int | None
    output_bytes: int
    cpu_seconds: float | None = None  # CPU time the run used (user + system)
    max_rss_mb: float | None = None  # its peak memory
    # The W3C traceparent of the span that created the run (not shown: for the message).
    _trace_context: str | None = PrivateAttr(default=None)


class WorkerRead(BaseModel):
    """A worker as the API shows it (the seed's Worker shape plus additions)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    hostname: str
    ip_address: str | None
    port: int | None
    task_types: list[str]
    max_concurrent_tasks: int
    current_task_count: int
    status: str
    last_heartbeat: datetime | None
    registered_at: datetime
    load_average: float | None
    memory_usage: float | None
    cpu_usage: float | None
    executor_types: list[str]
    pid: int | None
    version: str | None
    isolation: str | None = None  # cgroup2 | hybrid (a cgroup per run) | none


class HeartbeatIn(BaseModel):
    """Body of POST /api/workers/{id}/heartbeat (the seed's fields)."""

    model_config = ConfigDict(extra="forbid")

    _numbers = field_validator(*NUMBERS[6:10], mode="before")(json_numbers)

    current_task_count: int = Field(default=0, ge=0, le=100_000)
    load_average: float | None = Field(default=None, ge=0)
    memory_usage: float | None = Field(default=None, ge=0)
    cpu_usage: float | None = Field(default=None, ge=0, le=100_000)


class OutputRead(BaseModel):
    """A slice of a run's output; read again from ``next_offset`` to follow it."""

    data: str
    offset: int
    next_offset: int
    finished: bool
