"""Prometheus metrics (prefix ``scheduler_``, DESIGN section 11) and their exposition.

Two kinds:

- Event metrics, counted where the event happens and registered on the default
  registry at import: API request durations, heartbeats, run durations (here), fires,
  fire lag and missed fires (:mod:`schedd.scheduler.metrics`). They cover what this
  process saw.
- State metrics, computed from the database at scrape time by
  :class:`DatabaseCollector`: runs by status and executor, queue depth, workers and
  tasks by status. They are the same whichever process is scraped.

``/metrics`` serves both (:func:`exposition`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlmodel import col

from schedd.alerts.rules import duration_seconds
from schedd.api.processes import metrics_directory
from schedd.db import Database
from schedd.errors import first_line
from schedd.models import (
    ACTIVE_RUN_STATUSES,
    RunStatus,
    Task,
    TaskRun,
    TaskStatus,
    Worker,
    WorkerStatus,
)
from schedd.types import utcnow

log = logging.getLogger("schedd.metrics")

# No *_created series: they double the output and say nothing an operator needs.
disable_created_metrics()

API_REQUEST_DURATION = Histogram(
    "scheduler_api_request_duration_seconds",
    "HTTP API request duration, by method, route template and status code.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
AUTH_FAILURES = Counter(
    "scheduler_api_auth_failures",
    "Failed API authentications (unauthorized) and requests refused for too many (limited).",
    ["outcome"],
)
WORKERS_REFUSED = Counter(
    "scheduler_worker_registrations_refused",
    "Worker registrations refused because scheduler.max_workers workers were active.",
)
HEARTBEATS = Counter(
    "scheduler_heartbeats",
    "Worker heartbeats recorded, by where they came from (api or worker).",
    ["source"],
)
RUN_DURATION = Histogram(
    "scheduler_run_duration_seconds",
    "Execution time of ended runs, by executor and final status.",
    ["executor", "status"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600),
)

RUN_CPU = Histogram(
    "scheduler_run_cpu_seconds",
    "CPU time (user + system) of ended runs, by executor.",
    ["executor"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800, 3600, 4 * 3600),
)
RUN_MAX_RSS = Histogram(
    "scheduler_run_max_rss_mb",
    "Peak memory (MB) of ended runs, by executor.",
    ["executor"],
    buckets=(1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096, 16384),
)

RECENT_WINDOW = timedelta(hours=1)


def _grouped(conn: sa.Connection, query: sa.Select[Any]) -> list[tuple[str, ...]]:
    """Rows of a GROUP BY query, every value as a string (label values and counts)."""
    return [tuple(str(v) for v in row) for row in conn.execute(query).all()]


def _counts(conn: sa.Connection, column: Any) -> dict[str, str]:
    query = sa.select(column, sa.func.count()).group_by(column)
    return {row[0]: row[1] for row in _grouped(conn, query)}


class DatabaseCollector(Collector):
    """State metrics from a handful of aggregate queries over indexed columns.

    When the database cannot be reached, only ``scheduler_database_up 0`` is reported
    (a scrape must not fail because of the thing it is meant to watch).
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def describe(self) -> Iterator[Metric]:
        return iter(())  # no fixed description: metrics are collected live

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "scheduler_database_up", "1 when the database answered this scrape, else 0."
        )
        try:
            families = self._families()
        except sa.exc.SQLAlchemyError as exc:
            log.warning("metrics: database unavailable: %s", first_line(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> list[Metric]:
        runs = TaskRun.__table__  # type: ignore[attr-defined]
        tasks = Task.__table__  # type: ignore[attr-defined]
        active = GaugeMetricFamily(
            "scheduler_runs_active",
            "Runs waiting, pending or running now, by status and executor.",
            labels=["status", "executor"],
        )
        recent = GaugeMetricFamily(
            "scheduler_runs_recent",
            "Runs created in the last hour, by current status and executor.",
            labels=["status", "executor"],
        )
        depth = GaugeMetricFamily(
            "scheduler_queue_depth",
            "Pending runs waiting for a worker, by task type.",
            labels=["task_type"],
        )
        workers = GaugeMetricFamily(
            "scheduler_workers", "Registered workers, by status.", labels=["status"]
        )
        task_count = GaugeMetricFamily("scheduler_tasks", "Tasks, by status.", labels=["status"])
        last_success = GaugeMetricFamily(
            "scheduler_task_last_success_timestamp_seconds",
            "When the task's newest completed run ended (Unix time); absent if none.",
            labels=["task"],
        )
        last_failure = GaugeMetricFamily(
            "scheduler_task_last_failure_timestamp_seconds",
            "When the task's newest failed, timed out or lost run ended (Unix time).",
            labels=["task"],
        )
        expected = GaugeMetricFamily(
            "scheduler_task_expected_interval_seconds",
            "The task's notify expect_every (the dead-man's switch period), if set.",
            labels=["task"],
        )
        since = utcnow() - RECENT_WINDOW
        by_executor = (
            sa.select(runs.c.status, tasks.c.executor, sa.func.count())
            .join(tasks, tasks.c.id == runs.c.task_id)
            .group_by(runs.c.status, tasks.c.executor)
        )
        with self.db.engine.connect() as conn:
            seen_active = _grouped(
                conn,
                by_executor.where(runs.c.status.in_([s.value for s in ACTIVE_RUN_STATUSES])),
            )
            seen_recent = _grouped(conn, by_executor.where(runs.c.created_at >= since))
            seen_depth = _grouped(
                conn,
                sa.select(runs.c.task_type, sa.func.count())
                .where(runs.c.status == RunStatus.pending.value)
                .group_by(runs.c.task_type),
            )
            seen_workers = _counts(conn, col(Worker.status))
            seen_tasks = _counts(conn, col(Task.status))
            outcomes = conn.execute(_last_outcomes(tasks, runs)).all()
        for status, executor, n in seen_active:
            active.add_metric([status, executor], float(n))
        for status, executor, n in seen_recent:
            recent.add_metric([status, executor], float(n))
        for task_type, n in seen_depth:
            depth.add_metric([task_type], float(n))
        for status in WorkerStatus:
            workers.add_metric([status.value], float(seen_workers.get(status.value, "0")))
        for status in TaskStatus:
            task_count.add_metric([status.value], float(seen_tasks.get(status.value, "0")))
        for name, notify, success, failure in outcomes:
            if success is not None:
                last_success.add_metric([name], _timestamp(success))
            if failure is not None:
                last_failure.add_metric([name], _timestamp(failure))
            every = (notify or {}).get("expect_every")
            if every is not None:
                with contextlib.suppress(ValueError):
                    expected.add_metric([name], duration_seconds(every))
        return [active, recent, depth, workers, task_count, last_success, last_failure, expected]


def _last_outcomes(tasks: sa.Table, runs: sa.Table) -> sa.Select[Any]:
    """Per task: name, notify rules, newest completion, newest failure (one index
    probe each on (task_id, status, completed_at))."""

    def newest(*statuses: RunStatus) -> sa.ScalarSelect[Any]:
        return (
            sa.select(sa.func.max(runs.c.completed_at))
            .where(runs.c.task_id == tasks.c.id, runs.c.status.in_([s.value for s in statuses]))
            .scalar_subquery()
        )

    return sa.select(
        tasks.c.name,
        tasks.c.notify,
        newest(RunStatus.completed),
        newest(RunStatus.failed, RunStatus.timeout, RunStatus.lost),
    )


def _timestamp(value: Any) -> float:
    if isinstance(value, str):  # SQLite answers an aggregate of a typed column as text
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return float(value.timestamp())


def database_registry(db: Database) -> CollectorRegistry:
    """A registry holding only the state metrics of ``db`` (one per API app)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(db))
    return registry


def exposition(state_registry: CollectorRegistry) -> bytes:
    """The text exposition of this process's event metrics plus the state metrics."""
    # Imported for their registration side effect: the scheduler's metrics appear
    # (at zero) even in a process that runs only the api role.
    from schedd.scheduler import metrics as _scheduler_metrics  # noqa: F401

    events: CollectorRegistry = REGISTRY
    directory = metrics_directory()
    if directory is not None:  # several API processes: the sum over all of them
        from prometheus_client.multiprocess import MultiProcessCollector

        events = CollectorRegistry(auto_describe=True)
        MultiProcessCollector(events, path=directory)
    return generate_latest(events) + generate_latest(state_registry)
