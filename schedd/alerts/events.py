"""Recording alert events and their deliveries.

Each event has a unique key (``failed:run:42``, ``absent:7:2026-03-01T02:30:00+00:00``):
however many notifiers or schedulers see the same outcome, one row is inserted and the
others' inserts do nothing. The event's deliveries (one per channel) are inserted in the
same transaction, so an event is never half recorded.

Runs are found by scanning what ended since the last scan (the run rows are the
record; a worker or reaper writes nothing extra on the hot path):

- ``failed``: a run that ended failed, timeout or lost on its last attempt (a failed
  attempt that will be retried is not an alert);
- ``recovered``: the first completed run after a task's last ``failed`` event;
- ``succeeded``: each completed run (opt-in);
- ``long_running``: a run still running ``warn_after_seconds`` after it started;
- ``absent``: no completed run for ``expect_every``, or none within ``grace`` after
  the first scheduled time since the last completion (paused or not): one event per
  silence, keyed by the last completion;
- ``missed``: recorded by the scheduler's fire step (:func:`record_missed`).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from schedd import cron
from schedd.alerts.rules import Rules, effective, parse_rules
from schedd.config import NotifySettings
from schedd.models import NotifyDelivery, NotifyEvent, RunOutput, RunStatus, Task, TaskRun, Worker
from schedd.redact import redact_text

events = NotifyEvent.__table__  # type: ignore[attr-defined]
deliveries = NotifyDelivery.__table__  # type: ignore[attr-defined]
tasks = Task.__table__  # type: ignore[attr-defined]
runs = TaskRun.__table__  # type: ignore[attr-defined]
workers = Worker.__table__  # type: ignore[attr-defined]
output = RunOutput.__table__  # type: ignore[attr-defined]

# Spelled as the partial index ix_task_runs_retryable_completed_at spells it.
ENDED_BADLY = sa.text("task_runs.status IN ('failed', 'timeout', 'lost')")
BATCH = 500
OUTPUT_TAIL_BYTES = 4096  # at most this much of the output's end goes into a message


@dataclass(frozen=True)
class TaskRules:
    """A task and its effective rules (its own over ``notify.default``)."""

    id: int
    name: str
    schedule: str | None
    timezone: str
    status: str
    created_at: datetime
    rules: Rules


def _insert(session: Session, table: sa.Table) -> Any:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


@dataclass(frozen=True)
class NewEvent:
    key: str
    event: str
    task_id: int | None
    run_id: int | None
    details: dict[str, Any]
    channels: list[str]


def record(session: Session, items: Sequence[NewEvent], now: datetime) -> int:
    """Insert the events and one pending delivery per channel each, in one statement
    apiece; an event whose key exists is left out with its deliveries. Returns how
    many events were new."""
    if not items:
        return 0
    stmt = (
        _insert(session, events)
        .on_conflict_do_nothing(index_elements=[events.c.key])
        .returning(events.c.id, events.c.key)
    )
    rows = [
        {
            "key": item.key[:200],
            "event": item.event,
            "task_id": item.task_id,
            "run_id": item.run_id,
            "created_at": now,
            "details": {"event": item.event, **item.details},
        }
        for item in items
    ]
    new_ids = {key: event_id for event_id, key in session.execute(stmt, rows)}
    wanted = [
        {
            "event_id": new_ids[item.key[:200]],
            "channel": name,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "digest_count": 0,
        }
        for item in items
        if item.key[:200] in new_ids
        for name in dict.fromkeys(item.channels)
    ]
    if wanted:
        session.execute(sa.insert(deliveries), wanted)
    return len(new_ids)


def load_rules(session: Session, settings: NotifySettings) -> list[TaskRules]:
    """Every task with its effective rules (tasks whose rules say nothing are left out)."""
    default = parse_rules(settings.default)
    found = []
    for row in session.execute(
        sa.select(
            tasks.c.id,
            tasks.c.name,
            tasks.c.schedule,
            tasks.c.timezone,
            tasks.c.status,
            tasks.c.created_at,
            tasks.c.notify,
        )
    ):
        try:
            rules = effective(row.notify, default)
        except ValueError:
            continue  # a row written around the API; nothing sensible to send
        if rules.channel_names():
            found.append(
                TaskRules(
                    row.id, row.name, row.schedule, row.timezone, row.status, row.created_at, rules
                )
            )
    return found


# -- run outcomes -----------------------------------------------------------------


def _run_columns() -> list[Any]:
    return [
        runs.c.id,
        runs.c.task_id,
        runs.c.status,
        runs.c.exit_code,
        runs.c.error_message,
        runs.c.execution_time,
        runs.c.started_at,
        runs.c.completed_at,
        runs.c.worker_id,
        runs.c.retry_count,
        runs.c.trigger,
        workers.c.hostname,
    ]


def output_tail(session: Session, run_id: int, lines: int) -> str:
    """The last ``lines`` lines of a run's stored output (at most OUTPUT_TAIL_BYTES)."""
    if lines <= 0:
        return ""
    chunks = session.execute(
        sa.select(output.c.data)
        .where(output.c.run_id == run_id)
        .order_by(output.c.seq.desc())
        .limit(8)
    ).scalars()
    text = ""
    for chunk in chunks:
        text = chunk + text
        if len(text) >= OUTPUT_TAIL_BYTES or text.count("\n") > lines:
            break
    tail = "\n".join(text.rstrip("\n").split("\n")[-lines:])
    return redact_text(tail[-OUTPUT_TAIL_BYTES:])


def run_details(row: Any, task_name: str) -> dict[str, Any]:
    """What a message about a run says (the output's tail is read when it is sent:
    events collapsed into a digest never need it)."""
    return {
        "task": {"id": row.task_id, "name": task_name},
        "run": {
            "id": row.id,
            "status": row.status,
            "exit_code": row.exit_code,
            "error": redact_text(row.error_message) if row.error_message else None,
            "duration_seconds": row.execution_time,
            "started_at": _iso(row.started_at),
            "completed_at": _iso(row.completed_at),
            "attempt": row.retry_count,
            "trigger": row.trigger,
            "worker": row.worker_id,
        },
        "host": row.hostname,
        "logs_command": f"schedctl run logs {row.id}",
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _recorded(event: str) -> sa.Exists:
    """The run of the scanned row already has an ``event`` event (so a full batch
    moves on instead of reading the same rows again)."""
    return sa.exists().where(events.c.run_id == runs.c.id, events.c.event == event)


def _unrecorded(session: Session, query: sa.Select[Any], event: str, since: datetime) -> list[Any]:
    """The runs of ``query`` that ended at or after ``since`` and have no ``event``
    event yet, the earliest ended first: at most a BATCH of them."""
    return list(
        session.execute(
            query.where(runs.c.completed_at >= since, ~_recorded(event))
            .order_by(runs.c.completed_at, runs.c.id)
            .limit(BATCH)
        ).all()
    )


def _run_event(event: str, row: Any, task: TaskRules, task_name: str | None = None) -> NewEvent:
    """The ``event`` of the run in ``row`` (the run columns), for ``task``'s channels."""
    details = run_details(row, task.name if task_name is None else task_name)
    channels = task.rules.channels(event)
    return NewEvent(f"{event}:run:{row.id}", event, row.task_id, row.id, details, channels)


def scan_outcomes(
    session: Session,
    rules: Sequence[TaskRules],
    settings: NotifySettings,
    *,
    since: datetime,
    now: datetime,
) -> tuple[int, bool]:
    """Record failed, recovered and succeeded events for runs that ended at or after
    ``since``. Returns (events recorded, whether a batch was full)."""
    by_id = {t.id: t for t in rules}
    recorded, full = 0, False
    base = sa.select(*_run_columns()).outerjoin(workers, workers.c.id == runs.c.worker_id)
    # Last attempts that ended badly (a failed attempt that will be retried is no alert).
    failed = _unrecorded(
        session,
        base.add_columns(tasks.c.name)
        .join(tasks, tasks.c.id == runs.c.task_id)
        .where(ENDED_BADLY, runs.c.retry_count >= tasks.c.retry_count),
        "failed",
        since,
    )
    full |= len(failed) == BATCH
    found = [
        _run_event("failed", row, by_id[row.task_id], row.name)
        for row in failed
        if row.task_id in by_id
    ]
    recorded += record(session, found, now)
    recorded += _recoveries(session, by_id, settings, now)
    wanted = [t.id for t in rules if t.rules.channels("succeeded")]
    if wanted:
        done = _unrecorded(
            session,
            base.where(runs.c.task_id.in_(wanted), runs.c.status == RunStatus.completed.value),
            "succeeded",
            since,
        )
        full |= len(done) == BATCH
        found = [_run_event("succeeded", row, by_id[row.task_id]) for row in done]
        recorded += record(session, found, now)
    return recorded, full


def _recoveries(
    session: Session, by_id: dict[int, TaskRules], settings: NotifySettings, now: datetime
) -> int:
    """A ``recovered`` event for each failing task (last event ``failed``) that has
    completed a run since."""
    last_failed = (
        sa.select(events.c.task_id, sa.func.max(events.c.id).label("failed_id"))
        .where(events.c.event == "failed", events.c.task_id.is_not(None))
        .group_by(events.c.task_id)
        .subquery()
    )
    last_recovered = (
        sa.select(events.c.task_id, sa.func.max(events.c.id).label("recovered_id"))
        .where(events.c.event == "recovered", events.c.task_id.is_not(None))
        .group_by(events.c.task_id)
        .subquery()
    )
    failing = session.execute(
        sa.select(last_failed.c.task_id, runs.c.completed_at)
        .join(events, events.c.id == last_failed.c.failed_id)
        .join(runs, runs.c.id == events.c.run_id)
        .outerjoin(last_recovered, last_recovered.c.task_id == last_failed.c.task_id)
        .where(
            sa.or_(
                last_recovered.c.recovered_id.is_(None),
                last_recovered.c.recovered_id < last_failed.c.failed_id,
            )
        )
    ).all()
    found = []
    for task_id, failed_at in failing:
        task = by_id.get(task_id)
        if task is None or failed_at is None:
            continue
        row = session.execute(
            sa.select(*_run_columns())
            .outerjoin(workers, workers.c.id == runs.c.worker_id)
            .where(
                runs.c.task_id == task_id,
                runs.c.status == RunStatus.completed.value,
                runs.c.completed_at > failed_at,
            )
            .order_by(runs.c.completed_at, runs.c.id)
            .limit(1)
        ).first()
        if row is None:
            continue
        found.append(_run_event("recovered", row, task))
    return record(session, found, now)


# -- silences and slowness --------------------------------------------------------


def scan_long_running(session: Session, rules: Sequence[TaskRules], now: datetime) -> int:
    """A ``long_running`` event for each run running longer than its task's
    ``warn_after_seconds``."""
    watched = {
        t.id: t
        for t in rules
        if t.rules.warn_after_seconds is not None and t.rules.channels("long_running")
    }
    if not watched:
        return 0
    shortest = min(t.rules.warn_after_seconds or 0 for t in watched.values())
    rows = session.execute(
        sa.select(*_run_columns())
        .outerjoin(workers, workers.c.id == runs.c.worker_id)
        .where(
            runs.c.status == RunStatus.running.value,
            runs.c.task_id.in_(list(watched)),
            runs.c.started_at <= now - timedelta(seconds=shortest),
        )
        .limit(BATCH)
    ).all()
    found = []
    for row in rows:
        task = watched[row.task_id]
        limit = task.rules.warn_after_seconds or 0
        if row.started_at is None or row.started_at > now - timedelta(seconds=limit):
            continue
        details = run_details(row, task.name)
        details["warn_after_seconds"] = limit
        details["running_seconds"] = round((now - row.started_at).total_seconds(), 1)
        found.append(
            NewEvent(
                f"long_running:run:{row.id}",
                "long_running",
                task.id,
                row.id,
                details,
                task.rules.channels("long_running"),
            )
        )
    return record(session, found, now)


def absent_since(task: TaskRules, last_completed: datetime | None, now: datetime) -> str | None:
    """Why ``task`` counts as absent at ``now`` (None: it does not).

    ``expect_every``: no completion for that long. ``grace``: the first scheduled time
    after the last completion (or the task's creation) passed more than ``grace`` ago.
    The schedule counts even while the task is paused: pausing by mistake is one of the
    silences this rule is for.
    """
    baseline = last_completed or task.created_at
    every = task.rules.expect_every_seconds
    if every is not None and now - baseline > timedelta(seconds=every):
        return f"no completed run for more than {task.rules.expect_every} (expect_every)"
    grace = task.rules.grace_seconds
    if grace is not None and task.schedule:
        try:
            due = cron.parse(task.schedule, task.timezone).next_after(baseline)
        except ValueError:
            return None
        if now - due > timedelta(seconds=grace):
            return (
                f"no completed run since the run scheduled for {due.isoformat()}"
                f" (grace {task.rules.grace})"
            )
    return None


def scan_absent(session: Session, rules: Sequence[TaskRules], now: datetime) -> int:
    """An ``absent`` event for each silent task: one per silence (keyed by the last
    completion), whatever the reason (paused, no worker, no scheduler)."""
    watched = {
        t.id: t
        for t in rules
        if t.rules.channels("absent")
        and (t.rules.expect_every is not None or (t.rules.grace is not None and t.schedule))
    }
    if not watched:
        return 0
    last = dict(
        session.execute(
            sa.select(runs.c.task_id, sa.func.max(runs.c.completed_at))
            .where(
                runs.c.task_id.in_(list(watched)),
                runs.c.status == RunStatus.completed.value,
            )
            .group_by(runs.c.task_id)
        ).all()
    )
    found = []
    host = socket.gethostname()
    for task in watched.values():
        last_completed = last.get(task.id)
        reason = absent_since(task, last_completed, now)
        if reason is None:
            continue
        window = _iso(last_completed) or f"created:{_iso(task.created_at)}"
        details = {
            "task": {"id": task.id, "name": task.name},
            "status": task.status,
            "reason": reason,
            "last_completed_at": _iso(last_completed),
            "host": host,
            "logs_command": f"schedctl task runs {task.id}",
        }
        found.append(
            NewEvent(
                f"absent:{task.id}:{window}",
                "absent",
                task.id,
                None,
                details,
                task.rules.channels("absent"),
            )
        )
    return record(session, found, now)


def missed_events(
    session: Session, settings: NotifySettings, fires: Sequence[Any], now: datetime
) -> int:
    """Record a ``missed`` event for each fire (``schedd.scheduler.fire.TaskFire``) that
    missed fire times, for tasks whose rules ask for it; keyed by the due time the fire
    consumed, which only one scheduler ever consumes."""
    missing = [f for f in fires if f.decision.missed and f.due_from is not None]
    if not missing:
        return 0
    default = parse_rules(settings.default)
    rows = session.execute(
        sa.select(tasks.c.id, tasks.c.notify).where(tasks.c.id.in_([f.task_id for f in missing]))
    ).all()
    channels: dict[int, list[str]] = {}
    for row in rows:
        try:
            channels[row.id] = effective(row.notify, default).channels("missed")
        except ValueError:
            continue
    found = [
        NewEvent(
            f"missed:{fire.task_id}:{_iso(fire.due_from)}",
            "missed",
            fire.task_id,
            None,
            {
                "task": {"id": fire.task_id, "name": fire.name},
                "missed": fire.decision.missed,
                "dropped": fire.decision.dropped,
                "misfire_policy": fire.misfire_policy,
                "reason": (
                    f"{fire.decision.missed} fire time(s) late or dropped since"
                    f" {_iso(fire.due_from)} (misfire_policy {fire.misfire_policy},"
                    f" {fire.decision.dropped} without a run)"
                ),
                "host": socket.gethostname(),
                "logs_command": f"schedctl task runs {fire.task_id}",
            },
            channels[fire.task_id],
        )
        for fire in missing
        if channels.get(fire.task_id)
    ]
    return record(session, found, now)
