"""System response models: audit and system log entries, stats and health."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    time: datetime
    actor: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]


class SystemLogRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    time: datetime
    level: str
    component: str
    message: str
    refs: dict[str, Any]


class RunCounts(BaseModel):
    total: int
    by_status: dict[str, int]
    success_rate: float | None  # completed / ended (skipped and cancelled excluded)
    throughput_per_minute: float  # ended runs per minute


class StatsRead(BaseModel):
    """GET /api/system/stats. Run windows count runs created in the last hour/day."""

    version: str
    uptime_seconds: float
    time: datetime
    tasks: dict[str, int]
    runs_last_hour: RunCounts
    runs_last_day: RunCounts
    workers: dict[str, int]
    queue_depth: int  # pending runs: the backlog waiting for a worker
    oldest_pending_seconds: float | None = None  # age of the oldest pending run


class HealthRead(BaseModel):
    status: str  # ok | degraded | unavailable
    database: str  # ok | unavailable
    broker: str  # ok | unavailable | none
    version: str
    # The backlog: pending runs and the age of the oldest (None when the database
    # did not answer).
    pending_runs: int | None = None
    oldest_pending_seconds: float | None = None
    # Active workers by how they isolate runs: cgroup2, hybrid (a cgroup per run) or
    # none (process groups); absent when the database does not answer.
    isolation: dict[str, int] | None = None
    # This process's host clock minus the database's (the scheduler fires by the
    # database's; each scheduler exports its own as scheduler_clock_skew_seconds).
    clock_skew_seconds: float | None = None
