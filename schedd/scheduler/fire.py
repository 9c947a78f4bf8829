"""The fire pass: turn due tasks into runs, exactly once per scheduled time.

One call of :func:`fire_due` is one transaction (the caller's session): it claims up to
``batch_size`` due tasks (active, ``next_run_at <= now``; ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so concurrent schedulers take disjoint tasks), decides for each what its
due times become (:mod:`schedd.scheduler.policies`), inserts the runs, and advances
``next_run_at`` past ``now``. The partial unique index on (task_id, scheduled_for) is
the final guard: if two schedulers ever raced on one task, the second insert of a time
does nothing (``ON CONFLICT DO NOTHING``) and publishes nothing.

The caller commits, then publishes the pending runs (:func:`FireResult.messages`) and
reports (:func:`report`): metrics and system events describe what was committed.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session

from schedd import cron, tracing
from schedd.brokers.base import Message
from schedd.models import RunStatus, TaskStatus, Trigger
from schedd.scheduler import dependencies, metrics, store
from schedd.scheduler.policies import FireDecision, decide_fire
from schedd.types import UTCDateTime, utcnow

log = logging.getLogger("schedd.scheduler.fire")

# Forward enumeration of a backlog stops after this many due times; beyond it the most
# recent ones are found by walking back from now (a week of a per-second schedule would
# otherwise cost seconds of CPU), and the missed count becomes a lower bound.
ENUMERATION_LIMIT = 1000

_ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class FireSettings:
    grace: float = 60.0  # scheduler.misfire_grace_seconds
    max_catchup: int = 100  # scheduler.max_catchup
    batch_size: int = 500  # scheduler.batch_size


@dataclass(frozen=True)
class TaskFire:
    """What one task's fire did, for metrics and system events."""

    task_id: int
    name: str
    misfire_policy: str
    decision: FireDecision
    exact: bool  # False when the backlog was too long to count exactly
    due_from: datetime | None = None  # the task's next_run_at this fire consumed


@dataclass
class FireResult:
    claimed: int = 0  # due tasks handled by this pass
    full: bool = False  # the batch was full: more tasks may be due right now
    runs: list[store.InsertedRun] = field(default_factory=list)
    fires: list[TaskFire] = field(default_factory=list)
    created_at: datetime | None = None

    @property
    def messages(self) -> list[Message]:
        return [r.message for r in self.runs if r.status == RunStatus.pending.value]


class Due(NamedTuple):
    """A task's due fire times (see :func:`due_times`)."""

    times: list[datetime]  # the most recent ``keep`` due times, ascending
    older: int  # earlier due times left out
    exact: bool  # False: the backlog was too long to count; ``older`` is a lower bound
    following: datetime | None  # the first fire time after now: the next next_run_at


def due_times(schedule: cron.Schedule, first: datetime, now: datetime, keep: int) -> Due:
    """The due fire times of a task: ``first`` (its ``next_run_at``) and the schedule's
    times after it, up to ``now`` inclusive; and the first fire time after ``now``."""
    if first > now:
        return Due([], 0, True, first)
    recent: deque[datetime] = deque(maxlen=max(keep, 0))
    count = 0
    moment: datetime | None = first
    while moment is not None and moment <= now:
        if count >= ENUMERATION_LIMIT:
            recent = deque(_walk_back(schedule, first, now, keep))
            return Due(list(recent), count, False, _next(schedule, now))
        recent.append(moment)
        count += 1
        moment = _next(schedule, moment)
    return Due(list(recent), count - len(recent), True, moment)


def _next(schedule: cron.Schedule, after: datetime) -> datetime | None:
    try:
        return schedule.next_after(after)
    except ValueError:  # beyond year 9998: the schedule has ended
        return None


def _walk_back(
    schedule: cron.Schedule, first: datetime, now: datetime, keep: int
) -> list[datetime]:
    found: list[datetime] = []
    moment = schedule.previous_at_or_before(now)
    while moment is not None and moment >= first and len(found) < keep:
        found.append(moment)
        moment = schedule.previous_at_or_before(moment - _ONE_MICROSECOND)
    found.reverse()
    return found


_DUE_COLUMNS = (
    store.tasks.c.id,
    store.tasks.c.name,
    store.tasks.c.schedule,
    store.tasks.c.timezone,
    store.tasks.c.next_run_at,
    store.tasks.c.misfire_policy,
    store.tasks.c.concurrency_policy,
    store.tasks.c.task_type,
    store.tasks.c.priority,
    sa.exists()
    .where(dependencies.edges.c.task_id == store.tasks.c.id)
    .correlate(store.tasks)
    .label("has_dependencies"),
)


def claim_due(session: Session, now: datetime, limit: int) -> list[Any]:
    """Lock and return up to ``limit`` due tasks, earliest first.

    PostgreSQL: rows another scheduler holds are skipped, not waited for. SQLite: the
    transaction already holds the database's write lock (BEGIN IMMEDIATE).
    """
    tasks = store.tasks
    query = (
        sa.select(*_DUE_COLUMNS)
        .where(tasks.c.status == TaskStatus.active.value, tasks.c.next_run_at <= now)
        .order_by(tasks.c.next_run_at, tasks.c.id)
        .limit(limit)
    )
    if store.is_postgres(session):
        query = query.with_for_update(skip_locked=True, of=tasks)
    return list(session.execute(query))


def fire_due(
    session: Session,
    *,
    now: datetime,
    settings: FireSettings,
    created_at: datetime | None = None,
    dispatched: bool = False,
) -> FireResult:
    """Fire one batch of due tasks inside the caller's transaction (see module doc).

    ``created_at`` stamps the new runs; by default the real time of the insert, so that
    ``created_at - scheduled_for`` is the true fire lag (tests pin it). ``dispatched``
    (a broker that claims in the database, for which the committed row IS the
    hand-over) stamps ``dispatched_at`` in the same insert instead of after a publish.
    """
    due = claim_due(session, now, settings.batch_size)
    result = FireResult(claimed=len(due), full=len(due) >= settings.batch_size)
    if not due:
        return result
    blocked = dependencies.gate_reasons(session, [row.id for row in due if row.has_dependencies])
    guarded = [row.id for row in due if row.concurrency_policy in ("forbid", "replace")]
    active = store.active_runs(session, guarded)
    created_at = created_at or utcnow()
    rows: list[dict[str, Any]] = []
    advances: list[dict[str, Any]] = []
    spans: dict[tuple[int, datetime | None], tracing.Span | None] = {}
    # Tasks that share a schedule, time zone, due time and policies (a burst of tasks
    # on one cron line) share one decision: computed once per batch, not once per task.
    decided: dict[tuple[Any, ...], tuple[FireDecision, datetime | None, bool]] = {}
    for task in due:
        active_run, reason = active.get(task.id), blocked.get(task.id)
        key = (
            task.schedule,
            task.timezone,
            task.next_run_at,
            task.misfire_policy,
            task.concurrency_policy,
            active_run,
            reason,
        )
        known = decided.get(key)
        if known is None:
            known = _decide(task, now, settings, active_run, reason)
            if known is not _INVALID_SCHEDULE:  # that one is logged for each task
                decided[key] = known
        decision, next_run_at, exact = known
        for fire in decision.fires:
            status = RunStatus.pending if fire.runs else RunStatus.skipped
            span = None
            if fire.runs and tracing.enabled():
                span = spans[(task.id, fire.scheduled_for)] = tracing.start(
                    "scheduler.fire",
                    attributes={
                        "sched.task_id": task.id,
                        "sched.task": task.name,
                        "sched.scheduled_for": fire.scheduled_for.isoformat(),
                    },
                )
            rows.append(
                store.run_row(
                    task,
                    trigger=Trigger.schedule,
                    status=status,
                    now=created_at,
                    scheduled_for=fire.scheduled_for,
                    reason=fire.reason,
                    dispatched_at=created_at if dispatched and fire.runs else None,
                    trace_context=tracing.traceparent(span),
                )
            )
        last = decision.fires[-1].scheduled_for if decision.fires else None
        advances.append(
            {"b_id": task.id, "b_old": task.next_run_at, "b_next": next_run_at, "b_last": last}
        )
        result.fires.append(
            TaskFire(
                task.id, task.name, task.misfire_policy, decision, exact, due_from=task.next_run_at
            )
        )
    result.runs = store.insert_fires(session, rows)
    # A fire another scheduler made first was not ours: its span is never ended (sent).
    for inserted in result.runs if spans else ():
        traced = spans.get((inserted.task_id, inserted.scheduled_for))
        if traced is not None:
            traced.set("sched.run_id", inserted.id)
            traced.end()
    result.created_at = created_at
    _replace(session, result, created_at)
    _advance(session, advances)
    return result


# What a task whose stored schedule no longer parses does: nothing, and stop being due.
_INVALID_SCHEDULE: tuple[FireDecision, datetime | None, bool] = (FireDecision(), None, True)


def _decide(
    task: Any, now: datetime, settings: FireSettings, active: str | None, blocked: str | None
) -> tuple[FireDecision, datetime | None, bool]:
    """One task's decision and its next fire time after ``now``."""
    if task.schedule is None:
        return FireDecision(), None, True  # no schedule: nothing to fire, stop being due
    try:
        schedule = cron.parse(task.schedule, task.timezone)
    except cron.CronError as exc:
        # Stored schedules are validated on write; one that no longer parses (a time
        # zone removed from tzdata) must not keep the task due forever.
        log.error(
            "task %s (id %d) has an invalid schedule and stops firing: %s",
            task.name,
            task.id,
            exc,
            extra={"task_id": task.id},
        )
        return _INVALID_SCHEDULE
    due = due_times(schedule, task.next_run_at, now, settings.max_catchup)
    decision = decide_fire(
        due.times,
        now,
        misfire_policy=task.misfire_policy,
        concurrency_policy=task.concurrency_policy,
        grace=settings.grace,
        max_catchup=settings.max_catchup,
        active=active,
        blocked=blocked,
        older=due.older,
    )
    return decision, due.following, due.exact


def _replace(session: Session, result: FireResult, now: datetime) -> None:
    """Replace: cancel the active runs of tasks whose new run was inserted (after the
    insert, so a fire that inserted nothing cancels nothing)."""
    new_runs = {r.task_id: r.id for r in result.runs if r.status == RunStatus.pending.value}
    for fire in result.fires:
        run_id = new_runs.get(fire.task_id)
        if fire.decision.cancel_active and run_id is not None:
            store.cancel_active(
                session,
                fire.task_id,
                reason=f"replaced by run {run_id} (concurrency_policy replace)",
                now=now,
                keep=[run_id],
            )


_JSON_ADVANCE = sa.text(
    "UPDATE tasks AS t SET next_run_at = u.next, last_run_at = COALESCE(u.last, t.last_run_at) "
    "FROM json_to_recordset(CAST(:rows AS json)) "
    "AS u(id integer, old timestamptz, next timestamptz, last timestamptz) "
    "WHERE t.id = u.id AND t.next_run_at = u.old"
)


def _advance(session: Session, advances: Sequence[dict[str, Any]]) -> None:
    """Move each fired task's next_run_at past now (guarded by the value it was fired
    at, so a concurrent edit of the task is never overwritten with a stale time)."""
    if store.is_postgres(session):
        rows = [
            {"id": a["b_id"], "old": a["b_old"], "next": a["b_next"], "last": a["b_last"]}
            for a in advances
        ]
        session.execute(_JSON_ADVANCE, {"rows": store.json_rows(rows)})
        return
    tasks = store.tasks
    stmt = (
        sa.update(tasks)
        .where(
            tasks.c.id == sa.bindparam("b_id"),
            tasks.c.next_run_at == sa.bindparam("b_old", type_=UTCDateTime()),
        )
        .values(
            next_run_at=sa.bindparam("b_next", type_=UTCDateTime()),
            last_run_at=sa.func.coalesce(
                sa.bindparam("b_last", type_=UTCDateTime()), tasks.c.last_run_at
            ),
        )
    )
    session.execute(stmt, list(advances))


def report(result: FireResult) -> None:
    """Metrics and system events for a committed fire pass."""
    created_at = result.created_at
    for run in result.runs:
        if run.status == RunStatus.pending.value and run.scheduled_for and created_at:
            metrics.FIRE_LAG.observe(max(0.0, (created_at - run.scheduled_for).total_seconds()))
    for fire in result.fires:
        decision = fire.decision
        for moment in decision.runs:
            log.info(
                "task %s (id %d) fired for %s",
                fire.name,
                fire.task_id,
                _iso(moment),
                extra={"task_id": fire.task_id},
            )
        if decision.missed:
            metrics.MISSED_FIRES.labels(policy=fire.misfire_policy).inc(decision.missed)
            log.warning(
                "task %s (id %d) missed %s%d fire time(s) (misfire_policy %s): %d run(s) "
                "created for them, %d dropped",
                fire.name,
                fire.task_id,
                "" if fire.exact else "at least ",
                decision.missed,
                fire.misfire_policy,
                decision.missed - decision.dropped,
                decision.dropped,
                extra={"task_id": fire.task_id},
            )
        for skipped in decision.fires:
            if skipped.reason is not None:
                log.info(
                    "task %s (id %d): fire at %s skipped: %s",
                    fire.name,
                    fire.task_id,
                    _iso(skipped.scheduled_for),
                    skipped.reason,
                    extra={"task_id": fire.task_id},
                )
    metrics.FIRES.inc(len(result.messages))


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
