"""Retention: old finished runs (with their output), system events and audit entries go.

The scheduler role calls :func:`purge_runs` and :func:`purge_events` every few minutes
(see :mod:`schedd.scheduler.passes`); no other process deletes history, so a host of
workers never competes with the schedulers for these locks.

A run is deleted when all of these hold:

- it is terminal (completed, failed, timeout, cancelled, lost, skipped): a waiting,
  pending or running run is never touched, however old;
- it ended (``completed_at``, else ``created_at``) before the cutoff;
- it is not the newest run of its task: a task that fires yearly, or was paused for
  months, still shows its last run and outcome, and the newest completed run that
  dependents and overlap checks look at is the last to go.

Rows go in batches of ``batch`` runs, each its own short transaction, so no lock is
held for long; on PostgreSQL the batch is taken with ``SKIP LOCKED``, so schedulers
purging at the same time divide the rows instead of waiting for each other.
``run_output`` rows follow by ``ON DELETE CASCADE``; a retry's ``parent_run_id``
becomes NULL.

System events (``system_logs``) and audit entries go by their ``time`` alone, in the
same kind of batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa

from schedd.db import Database
from schedd.models import (
    TERMINAL_RUN_STATUSES,
    AuditEntry,
    NotifyDelivery,
    NotifyEvent,
    SystemLog,
    TaskRun,
)

RUN_BATCH = 200
EVENT_BATCH = 1000
# Longest one purge call works before it hands the pass back (the rest waits for the
# next call): retention must not delay firing.
TIME_BUDGET = 2.0

runs: sa.Table = TaskRun.__table__  # type: ignore[attr-defined]
system_logs: sa.Table = SystemLog.__table__  # type: ignore[attr-defined]
audit_log: sa.Table = AuditEntry.__table__  # type: ignore[attr-defined]
# Alerts go with system events (retention.system_logs_days), deliveries first.
notify_deliveries: sa.Table = NotifyDelivery.__table__  # type: ignore[attr-defined]
notify_events: sa.Table = NotifyEvent.__table__  # type: ignore[attr-defined]


def old_runs(cutoff: datetime, batch: int) -> sa.Select[Any]:
    """The ids of up to ``batch`` runs that retention may delete (see the module doc)."""
    newer = runs.alias("newer")
    newest_of_task = (
        sa.select(sa.func.max(newer.c.id)).where(newer.c.task_id == runs.c.task_id)
    ).scalar_subquery()
    return (
        sa.select(runs.c.id)
        .where(
            runs.c.created_at < cutoff,  # uses ix_task_runs_created_at; created <= ended
            sa.func.coalesce(runs.c.completed_at, runs.c.created_at) < cutoff,
            runs.c.status.in_(sorted(s.value for s in TERMINAL_RUN_STATUSES)),
            runs.c.id != newest_of_task,
        )
        .order_by(runs.c.created_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )


def purge_runs(
    db: Database,
    cutoff: datetime,
    *,
    batch: int = RUN_BATCH,
    time_budget: float = TIME_BUDGET,
) -> tuple[int, bool]:
    """Delete old finished runs in batches; (runs deleted, True when some are left)."""
    return _purge(db, runs, lambda: old_runs(cutoff, batch), batch, time_budget)


def old_events(table: sa.Table, cutoff: datetime, batch: int) -> sa.Select[Any]:
    """The ids of up to ``batch`` rows of ``table`` stamped (``time``, else
    ``created_at``) before ``cutoff``."""
    stamp = table.c.time if "time" in table.c else table.c.created_at
    return (
        sa.select(table.c.id)
        .where(stamp < cutoff)
        .order_by(stamp)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )


def purge_events(
    db: Database,
    table: sa.Table,
    cutoff: datetime,
    *,
    batch: int = EVENT_BATCH,
    time_budget: float = TIME_BUDGET,
) -> tuple[int, bool]:
    """Delete rows of ``table`` (system events, audit entries) older than ``cutoff`` in
    batches; (rows deleted, True when some are left)."""
    return _purge(db, table, lambda: old_events(table, cutoff, batch), batch, time_budget)


def _purge(
    db: Database,
    table: sa.Table,
    select_ids: Callable[[], sa.Select[Any]],
    batch: int,
    time_budget: float,
) -> tuple[int, bool]:
    deadline = time.monotonic() + time_budget
    total = 0
    while True:
        with db.session() as session:
            ids = list(session.execute(select_ids()).scalars())
            if ids:
                result = session.execute(sa.delete(table).where(table.c.id.in_(ids)))
                total += cast("sa.CursorResult[Any]", result).rowcount
        if len(ids) < batch:
            return total, False
        if time.monotonic() >= deadline:
            return total, True
