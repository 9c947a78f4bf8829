"""Run-table SQL shared by the scheduler and the run services.

Every state change here is one guarded statement (``UPDATE ... WHERE status IN (...)``),
so it is safe however many schedulers, API processes and workers race on the same rows.
Inserts use ``ON CONFLICT DO NOTHING`` on the keys that make a fire or a retry unique:
(task_id, scheduled_for) for schedule and dependency runs, parent_run_id for retries.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from schedd.brokers.base import Message
from schedd.models import Priority, RunStatus, Task, TaskRun, Trigger

ACTIVE = (RunStatus.waiting.value, RunStatus.pending.value, RunStatus.running.value)
# The predicate of the partial unique index uq_task_runs_task_id_scheduled_for.
FIRE_KEY_WHERE = sa.text("\"trigger\" IN ('schedule', 'dependency')")

runs = TaskRun.__table__  # type: ignore[attr-defined]
tasks = Task.__table__  # type: ignore[attr-defined]


def _utc(value: Any) -> Any:
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def id_in(column: Any, ids: Sequence[int], session: Session) -> Any:
    """``column IN ids``; on PostgreSQL ``= ANY(array)``: one parameter, not len(ids)."""
    if is_postgres(session):
        return column == sa.any_(sa.literal(list(ids), type_=postgresql.ARRAY(sa.Integer)))
    return column.in_(list(ids))


@dataclass(frozen=True)
class InsertedRun:
    id: int
    task_id: int
    status: str
    priority: int
    task_type: str
    scheduled_for: datetime | None
    trace_context: str | None = None  # W3C traceparent of the span that created it

    @property
    def message(self) -> Message:
        return Message(self.id, self.priority, self.task_type, self.trace_context)


def run_row(
    task: Task | Any,
    *,
    trigger: Trigger | str,
    status: RunStatus | str,
    now: datetime,
    scheduled_for: datetime | None = None,
    reason: str | None = None,
    arguments: list[str] | None = None,
    retry_count: int = 0,
    parent_run_id: int | None = None,
    not_before: datetime | None = None,
    dispatched_at: datetime | None = None,
    trace_context: str | None = None,
) -> dict[str, Any]:
    """The column values of a new run of ``task`` (any object with id, task_type, priority).

    ``skipped`` runs are born terminal: ``completed_at`` is ``now`` and ``reason`` goes to
    ``error_message``. Every row has the same keys, so a list of them is one executemany.
    """
    status = RunStatus(status)
    return {
        "task_id": task.id,
        "status": status.value,
        "trigger": Trigger(trigger).value,
        "scheduled_for": scheduled_for,
        "created_at": now,
        "task_type": task.task_type,
        "priority": Priority(task.priority).rank,
        "arguments": arguments,
        "retry_count": retry_count,
        "parent_run_id": parent_run_id,
        "not_before": not_before,
        "error_message": reason,
        "completed_at": now if status.terminal else None,
        "dispatched_at": dispatched_at,
        "claim": 0,
        "cancel_requested": False,
        "output_bytes": 0,
        "trace_context": trace_context,
    }


def _insert(session: Session) -> Any:
    if is_postgres(session):
        return postgresql.insert(runs)
    return sqlite.insert(runs)


_RETURNING = (
    runs.c.id,
    runs.c.task_id,
    runs.c.status,
    runs.c.priority,
    runs.c.task_type,
    runs.c.scheduled_for,
    runs.c.trace_context,
)


def _returned(rows: Iterable[Any]) -> list[InsertedRun]:
    return [InsertedRun(*row) for row in rows]


def insert_fires(session: Session, rows: Sequence[dict[str, Any]]) -> list[InsertedRun]:
    """Insert schedule/dependency runs; a (task, scheduled_for) that exists is skipped.

    Returns only the rows this call inserted: a time another scheduler already fired
    produces nothing here, so nothing is published twice.
    """
    if not rows:
        return []
    if is_postgres(session):
        return _insert_fires_json(session, rows)
    stmt = (
        _insert(session)
        .on_conflict_do_nothing(
            index_elements=[runs.c.task_id, runs.c.scheduled_for], index_where=FIRE_KEY_WHERE
        )
        .returning(*_RETURNING)
    )
    return _returned(session.execute(stmt, list(rows)))


# Columns a fire row sets; the others keep the defaults of a first attempt.
_FIRE_COLUMNS = {
    "task_id": "integer",
    "status": "text",
    "trigger": "text",
    "scheduled_for": "timestamptz",
    "created_at": "timestamptz",
    "task_type": "text",
    "priority": "integer",
    "error_message": "text",
    "completed_at": "timestamptz",
    "dispatched_at": "timestamptz",
    "trace_context": "text",
}
_FIRE_DEFAULTS = {
    "arguments": None,
    "retry_count": 0,
    "parent_run_id": None,
    "not_before": None,
    "claim": 0,
    "cancel_requested": False,
    "output_bytes": 0,
}
_JSON_INSERT = sa.text(
    "INSERT INTO task_runs ({names}, retry_count, claim, cancel_requested, output_bytes) "
    "SELECT {names}, 0, 0, false, 0 FROM json_to_recordset(CAST(:rows AS json)) AS u({types}) "
    "ON CONFLICT (task_id, scheduled_for) WHERE \"trigger\" IN ('schedule', 'dependency') "
    "DO NOTHING RETURNING id, task_id, status, priority, task_type, scheduled_for, "
    "trace_context".format(
        names=", ".join(f'"{name}"' for name in _FIRE_COLUMNS),
        types=", ".join(f'"{name}" {kind}' for name, kind in _FIRE_COLUMNS.items()),
    )
)


def json_default(value: Any) -> str:
    """JSON for the datetimes of a batch parameter (PostgreSQL reads ISO 8601)."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def json_rows(rows: Sequence[dict[str, Any]]) -> str:
    """A batch of rows as one JSON parameter (see :func:`_insert_fires_json`).

    The rows of a batch mostly share their times (created_at, the due second): each
    distinct datetime is formatted once."""
    texts: dict[datetime, str] = {}

    def text(value: Any) -> Any:
        if not isinstance(value, datetime):
            return value
        found = texts.get(value)
        if found is None:
            found = texts[value] = value.isoformat()
        return found

    plain = [{key: text(value) for key, value in row.items()} for row in rows]
    return json.dumps(plain, default=json_default, separators=(",", ":"))


def _insert_fires_json(session: Session, rows: Sequence[dict[str, Any]]) -> list[InsertedRun]:
    """PostgreSQL: the whole batch as one INSERT ... SELECT FROM json_to_recordset(rows).

    One statement with one text parameter: the driver would spend most of the time
    adapting thousands of placeholders (a multi-row VALUES list) or array elements
    (unnest of ten arrays, element by element in Python); json.dumps is C and the
    server reads the JSON in a fraction of the insert's time.
    """
    for row in rows:
        assert all(row[key] == value for key, value in _FIRE_DEFAULTS.items()), row
    payload = json_rows([{name: row[name] for name in _FIRE_COLUMNS} for row in rows])
    found = session.execute(_JSON_INSERT, {"rows": payload})
    return [
        InsertedRun(run_id, task_id, status, priority, task_type, _utc(scheduled_for), trace)
        for run_id, task_id, status, priority, task_type, scheduled_for, trace in found
    ]


def insert_retry(session: Session, row: dict[str, Any]) -> InsertedRun | None:
    """Insert a retry run unless its parent already has one (unique parent_run_id)."""
    stmt = (
        _insert(session)
        .values(**row)
        .on_conflict_do_nothing(index_elements=[runs.c.parent_run_id])
        .returning(*_RETURNING)
    )
    found = _returned(session.execute(stmt))
    return found[0] if found else None


def insert_run(session: Session, row: dict[str, Any]) -> InsertedRun:
    """Insert a run that no unique key can refuse (manual triggers and re-runs)."""
    stmt = sa.insert(runs).values(**row).returning(*_RETURNING)
    return _returned(session.execute(stmt))[0]


def active_runs(session: Session, task_ids: Sequence[int]) -> dict[int, str]:
    """For each task with a waiting, pending or running run: a description of its oldest
    active run (``"run 12 (running)"``). Tasks without one are absent."""
    if not task_ids:
        return {}
    rows = session.execute(
        sa.select(runs.c.task_id, runs.c.id, runs.c.status)
        .where(id_in(runs.c.task_id, task_ids, session), runs.c.status.in_(ACTIVE))
        .order_by(runs.c.task_id, runs.c.id)
    )
    found: dict[int, str] = {}
    for task_id, run_id, status in rows:
        found.setdefault(task_id, f"run {run_id} ({status})")
    return found


def cancel_active(
    session: Session,
    task_id: int,
    *,
    reason: str,
    now: datetime,
    keep: Sequence[int] = (),
) -> list[int]:
    """Replace: cancel the task's waiting and pending runs, ask its running ones to stop.

    Runs in ``keep`` (the replacement) are left alone. Returns the ids touched. A running
    run is only flagged (``cancel_requested``): its worker kills it and writes
    ``cancelled`` itself, fenced by its claim.
    """
    cancelled = session.execute(
        sa.update(runs)
        .where(
            runs.c.task_id == task_id,
            runs.c.status.in_((RunStatus.waiting.value, RunStatus.pending.value)),
            runs.c.id.not_in(keep),
        )
        .values(status=RunStatus.cancelled.value, completed_at=now, error_message=reason)
        .returning(runs.c.id)
    ).scalars()
    ids = list(cancelled)
    flagged = session.execute(
        sa.update(runs)
        .where(
            runs.c.task_id == task_id,
            runs.c.status == RunStatus.running.value,
            runs.c.cancel_requested == sa.false(),
            runs.c.id.not_in(keep),
        )
        .values(cancel_requested=True)
        .returning(runs.c.id)
    ).scalars()
    return ids + list(flagged)


def mark_dispatched(session: Session, run_ids: Sequence[int], now: datetime) -> None:
    """Record that these runs were handed to the broker (only those still pending).

    On PostgreSQL rows locked by someone else are skipped, not waited for: a worker is
    claiming that run right now (the message was faster than this stamp), and a claimed
    run needs no stamp. So this never waits for, nor deadlocks with, a worker's claim.
    """
    for start in range(0, len(run_ids), 5000):
        chunk = run_ids[start : start + 5000]
        pending = runs.c.status == RunStatus.pending.value
        pick = sa.select(runs.c.id).where(id_in(runs.c.id, chunk, session), pending)
        if is_postgres(session):
            pick = pick.with_for_update(skip_locked=True)
        session.execute(
            sa.update(runs)
            .where(runs.c.id.in_(pick.scalar_subquery()), pending)
            .values(dispatched_at=now)
        )
