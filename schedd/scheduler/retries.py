"""Retries: a failed, timed-out or lost run with attempts left gets one new run.

The retry is a new row: ``trigger=retry``, ``retry_count`` one more than its parent's,
``parent_run_id`` the parent's id, the parent's ``scheduled_for`` and argument override,
status ``waiting`` until ``not_before`` = the parent's end + :func:`retry_delay` (or the
retry's ``created_at`` when that is later). The
unique ``parent_run_id`` makes the retry of a run happen once, however many
schedulers find it at the same time. Cancelled and skipped runs are never retried.
Pausing a task does not stop the retries of fires that already happened.

:func:`promote_waiting` turns waiting runs whose ``not_before`` has passed into pending
runs, to be published after the commit.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace

import sqlalchemy as sa
from sqlmodel import Session

from schedd import tracing
from schedd.brokers.base import Message
from schedd.models import RunStatus, Trigger
from schedd.scheduler import metrics, store
from schedd.scheduler.policies import retry_delay

log = logging.getLogger("schedd.scheduler.retries")

# Spelled as the partial index ix_task_runs_retryable_completed_at spells it, so that
# SQLite and PostgreSQL can prove the index applies (a bound parameter would hide it).
RETRYABLE_WHERE = sa.text("task_runs.status IN ('failed', 'timeout', 'lost')")
WAITING_WHERE = sa.text("task_runs.status = 'waiting'")


@dataclass(frozen=True)
class Retry:
    """A committed retry: the new run, its parent, and when it becomes claimable."""

    task_id: int
    name: str
    parent_id: int
    parent_status: str
    run: store.InsertedRun
    attempt: int
    not_before: datetime


def create_retries(
    session: Session,
    *,
    since: datetime,
    now: datetime,
    delay_max: float,
    batch: int,
    rand: Callable[[], float] = random.random,
) -> tuple[list[Retry], bool]:
    """Create the retries of runs that ended at or after ``since``, in the caller's
    transaction. Returns (retries created, whether the batch was full)."""
    runs, tasks = store.runs, store.tasks
    child = runs.alias("child")
    candidates = session.execute(
        sa.select(
            runs.c.id,
            runs.c.task_id,
            runs.c.status,
            runs.c.retry_count,
            runs.c.scheduled_for,
            runs.c.completed_at,
            runs.c.arguments,
            runs.c.trace_context,
            tasks.c.name,
            tasks.c.task_type,
            tasks.c.priority,
            tasks.c.retry_delay_seconds,
        )
        .join(tasks, tasks.c.id == runs.c.task_id)
        .where(
            RETRYABLE_WHERE,
            runs.c.completed_at >= since,
            runs.c.retry_count < tasks.c.retry_count,
            ~sa.exists().where(child.c.parent_run_id == runs.c.id),
        )
        .order_by(runs.c.completed_at, runs.c.id)
        .limit(batch)
    ).all()
    created: list[Retry] = []
    for run in candidates:
        ended = run.completed_at or now
        delay = retry_delay(run.retry_delay_seconds, run.retry_count, delay_max, rand=rand)
        # Never before the retry itself exists: a scheduler that saw the failure late
        # makes the retry due at once, not in the past.
        not_before = max(ended + timedelta(seconds=delay), now)
        task = SimpleNamespace(id=run.task_id, task_type=run.task_type, priority=run.priority)
        # The retry continues its parent's trace: all attempts of a fire are one trace.
        span = tracing.start(
            "scheduler.retry",
            parent=run.trace_context,
            attributes={
                "sched.task_id": run.task_id,
                "sched.task": run.name,
                "sched.parent_run_id": run.id,
                "sched.attempt": run.retry_count + 1,
            },
        )
        row = store.run_row(
            task,
            trigger=Trigger.retry,
            status=RunStatus.waiting,
            now=now,
            scheduled_for=run.scheduled_for,
            arguments=run.arguments,
            retry_count=run.retry_count + 1,
            parent_run_id=run.id,
            not_before=not_before,
            trace_context=tracing.traceparent(span),
        )
        inserted = store.insert_retry(session, row)
        if inserted is not None and span is not None:
            span.set("sched.run_id", inserted.id)
            span.end()
        if inserted is not None:
            created.append(
                Retry(
                    run.task_id,
                    run.name,
                    run.id,
                    run.status,
                    inserted,
                    run.retry_count + 1,
                    not_before,
                )
            )
    return created, len(candidates) >= batch


def promote_waiting(
    session: Session, *, now: datetime, batch: int, dispatched: bool = False
) -> list[Message]:
    """Make waiting runs whose ``not_before`` has passed pending; returns what to publish.

    One guarded UPDATE: a run cancelled meanwhile is no longer ``waiting`` and stays as
    it is. On PostgreSQL rows another scheduler is promoting are skipped.
    ``dispatched``: stamp ``dispatched_at`` in the same UPDATE (a broker that claims in
    the database: a separate stamp after the hint would hold the row locked just when
    a woken worker tries to claim it, and its SKIP LOCKED would pass it over).
    """
    runs = store.runs
    due = (
        sa.select(runs.c.id)
        .where(WAITING_WHERE, sa.or_(runs.c.not_before.is_(None), runs.c.not_before <= now))
        .order_by(runs.c.not_before, runs.c.id)
        .limit(batch)
    )
    if store.is_postgres(session):
        due = due.with_for_update(skip_locked=True)
    values: dict[str, object] = {"status": RunStatus.pending.value}
    if dispatched:
        values["dispatched_at"] = now
    promoted = session.execute(
        sa.update(runs)
        .where(runs.c.id.in_(due.scalar_subquery()), runs.c.status == RunStatus.waiting.value)
        .values(values)
        .returning(runs.c.id, runs.c.priority, runs.c.task_type, runs.c.trace_context)
    ).all()
    return [Message(*row) for row in promoted]


def next_waiting(session: Session) -> datetime | None:
    """The earliest ``not_before`` of a waiting run (when the next promotion is due)."""
    runs = store.runs
    value: datetime | None = session.execute(
        sa.select(sa.func.min(runs.c.not_before)).where(WAITING_WHERE)
    ).scalar_one()
    return value


def report(retries: Sequence[Retry]) -> None:
    """Metrics and system events for committed retries."""
    for retry in retries:
        metrics.RETRIES.inc()
        log.info(
            "task %s (id %d): run %d %s; retry %d is run %d, not before %s",
            retry.name,
            retry.task_id,
            retry.parent_id,
            retry.parent_status,
            retry.attempt,
            retry.run.id,
            retry.not_before.isoformat().replace("+00:00", "Z"),
            extra={"task_id": retry.task_id, "run_id": retry.run.id},
        )
