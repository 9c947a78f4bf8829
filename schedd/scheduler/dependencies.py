"""Dependencies: gating scheduled tasks, releasing unscheduled ones (DESIGN section 6).

Gate: a task WITH a schedule and with dependencies fires only if every upstream's latest
run (by creation, ignoring ``skipped`` bookkeeping runs) is ``completed``; otherwise the
fire is recorded as a skipped run naming the upstream that blocked it.

Join: a task WITHOUT a schedule and with dependencies is released (one run,
``trigger=dependency``) when every upstream has a ``completed`` run that finished after
the task's previous release, or, before its first release, after the task was created
(dependencies are about new results, not history). The run's ``scheduled_for`` is the
newest of those completion times: the same release computed by two schedulers gives the
same (task_id, scheduled_for), which the unique index accepts once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from schedd import tracing
from schedd.models import RunStatus, TaskDependency, TaskStatus, Trigger
from schedd.scheduler import store
from schedd.scheduler.policies import decide_overlap

log = logging.getLogger("schedd.scheduler.dependencies")

edges = TaskDependency.__table__  # type: ignore[attr-defined]


def gate_reasons(session: Session, task_ids: Sequence[int]) -> dict[int, str]:
    """For each of ``task_ids`` whose upstreams forbid a fire now: the reason."""
    if not task_ids:
        return {}
    runs, tasks = store.runs, store.tasks
    latest = (
        sa.select(runs.c.id)
        .where(runs.c.task_id == edges.c.depends_on_id, runs.c.status != RunStatus.skipped.value)
        .order_by(runs.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = session.execute(
        sa.select(edges.c.task_id, edges.c.depends_on_id, tasks.c.name, latest.label("run_id"))
        .join(tasks, tasks.c.id == edges.c.depends_on_id)
        .where(edges.c.task_id.in_(task_ids))
        .order_by(edges.c.task_id, edges.c.depends_on_id)
    ).all()
    run_ids = [row.run_id for row in rows if row.run_id is not None]
    statuses: dict[int, str] = {}
    if run_ids:
        statuses = {
            run_id: status
            for run_id, status in session.execute(
                sa.select(runs.c.id, runs.c.status).where(runs.c.id.in_(run_ids))
            )
        }
    reasons: dict[int, list[str]] = {}
    for row in rows:
        upstream = f"upstream task {row.name!r} (id {row.depends_on_id})"
        if row.run_id is None:
            reasons.setdefault(row.task_id, []).append(f"{upstream} has not run yet")
        elif statuses.get(row.run_id) != RunStatus.completed.value:
            status = statuses.get(row.run_id, "gone")
            reasons.setdefault(row.task_id, []).append(
                f"{upstream}: its latest run {row.run_id} is {status}, not completed"
            )
    return {task_id: "; ".join(parts) for task_id, parts in reasons.items()}


@dataclass(frozen=True)
class Release:
    """A dependent task whose upstreams all completed since its last release."""

    task: Any  # row: id, name, concurrency_policy, task_type, priority
    scheduled_for: datetime


def ready_dependents(session: Session) -> list[Release]:
    """Unscheduled active tasks with dependencies whose join condition holds now."""
    runs, tasks = store.runs, store.tasks
    has_edge = edges.alias("has_edge")
    dependent = sa.and_(
        tasks.c.status == TaskStatus.active.value,
        tasks.c.schedule.is_(None),
        sa.exists().where(has_edge.c.task_id == tasks.c.id).correlate(tasks),
    )
    last_release = (
        sa.select(sa.func.max(runs.c.scheduled_for))
        .where(
            runs.c.task_id == tasks.c.id,
            store.FIRE_KEY_WHERE,  # lets the partial unique index serve this lookup
            runs.c.trigger == Trigger.dependency.value,
        )
        .scalar_subquery()
    )
    candidates = session.execute(
        sa.select(
            tasks.c.id,
            tasks.c.name,
            tasks.c.created_at,
            tasks.c.concurrency_policy,
            tasks.c.task_type,
            tasks.c.priority,
            sa.type_coerce(last_release, store.runs.c.scheduled_for.type).label("last_release"),
        ).where(dependent)
    ).all()
    if not candidates:
        return []
    last_ok = (
        sa.select(sa.func.max(runs.c.completed_at))
        .where(runs.c.task_id == edges.c.depends_on_id, runs.c.status == RunStatus.completed.value)
        .scalar_subquery()
    )
    completions: dict[int, list[datetime | None]] = {}
    for task_id, finished in session.execute(
        sa.select(
            edges.c.task_id,
            sa.type_coerce(last_ok, store.runs.c.completed_at.type),
        )
        .join(tasks, tasks.c.id == edges.c.task_id)
        .where(dependent)
    ):
        completions.setdefault(task_id, []).append(finished)
    releases = []
    for task in candidates:
        baseline = task.last_release or task.created_at
        finished_times = completions.get(task.id, [])
        if finished_times and all(t is not None and t > baseline for t in finished_times):
            newest = max(t for t in finished_times if t is not None)
            releases.append(Release(task, newest))
    return releases


@dataclass(frozen=True)
class Released:
    """A committed dependency release: the run created, and why it is skipped if it is."""

    task_id: int
    name: str
    run: store.InsertedRun
    reason: str | None


def release_dependents(
    session: Session, *, now: datetime, dispatched: bool = False
) -> list[Released]:
    """Create the dependency runs that are due, in the caller's transaction.

    ``dispatched``: stamp ``dispatched_at`` in the insert (a broker that claims in the
    database: the committed row is the hand-over, the publish only a hint).

    Insert first, cancel after (replace): if another scheduler released the same join
    first, our insert does nothing and so cancels nothing.
    """
    releases = ready_dependents(session)
    if not releases:
        return []
    active = store.active_runs(session, [r.task.id for r in releases])
    created: list[Released] = []
    for release in releases:
        task = release.task
        fires, cancel = decide_overlap(
            [release.scheduled_for], policy=task.concurrency_policy, active=active.get(task.id)
        )
        fire = fires[0]
        span = None
        if fire.runs:
            span = tracing.start(
                "scheduler.release", attributes={"sched.task_id": task.id, "sched.task": task.name}
            )
        row = store.run_row(
            task,
            trigger=Trigger.dependency,
            status=RunStatus.pending if fire.runs else RunStatus.skipped,
            now=now,
            scheduled_for=release.scheduled_for,
            reason=fire.reason,
            dispatched_at=now if dispatched and fire.runs else None,
            trace_context=tracing.traceparent(span),
        )
        inserted = store.insert_fires(session, [row])
        if not inserted:
            continue  # another scheduler released this join first (its span unsent)
        run = inserted[0]
        if span is not None:
            span.set("sched.run_id", run.id)
            span.end()
        if cancel:
            store.cancel_active(
                session,
                task.id,
                reason=f"replaced by dependency run {run.id}",
                now=now,
                keep=[run.id],
            )
        session.execute(
            sa.update(store.tasks)
            .where(store.tasks.c.id == task.id)
            .values(last_run_at=release.scheduled_for)
        )
        created.append(Released(task.id, task.name, run, fire.reason))
    return created


def report(released: Sequence[Released]) -> None:
    """System events for committed releases."""
    for item in released:
        extra = {"task_id": item.task_id, "run_id": item.run.id}
        if item.reason is None:
            log.info(
                "task %s (id %d) released: all its upstreams completed (run %d)",
                item.name,
                item.task_id,
                item.run.id,
                extra=extra,
            )
        else:
            log.info(
                "task %s (id %d): dependency release skipped: %s",
                item.name,
                item.task_id,
                item.reason,
                extra=extra,
            )
