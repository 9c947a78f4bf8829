"""Run use cases: list, show, cancel, re-run, preview fire times, and hand runs to a broker.

The HTTP API and `schedctl --db` call these functions. Like the task service they work
inside the caller's session (one transaction). A function that creates a pending run
returns it; the CALLER publishes it after the commit, because a broker must never
hear of a run that is not committed (transactional outbox)::

    with db.session() as session:
        run = lifecycle.trigger_task(session, "backup", actor="alice")
    runs.dispatch(db, broker, [runs.message_of(run)])

Without a broker in the process (``broker=None``, e.g. `schedctl --db`), ``dispatch``
does nothing and the scheduler's outbox sweeper hands the run over within seconds;
workers of the database broker claim straight from the table and need no hand-over.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from schedd import cron, tracing
from schedd.bounds import MAX_ARGUMENTS
from schedd.brokers.base import Broker, Message
from schedd.db import Database
from schedd.errors import Conflict, InvalidInput, NotFound
from schedd.models import ConcurrencyPolicy, RunStatus, Task, TaskRun, TaskStatus, Trigger
from schedd.scheduler import store
from schedd.schemas import Page, RunRead
from schedd.services import audit
from schedd.services.dispatch import dispatcher_for
from schedd.services.paging import DEFAULT_PAGE_SIZE, fetch_page
from schedd.services.tasks import resolve
from schedd.types import utcnow

log = logging.getLogger("schedd.services.runs")

MAX_FIRE_PREVIEW = 100


def message_of(run: RunRead | TaskRun | store.InsertedRun) -> Message:
    """The broker message for a run: its id, priority rank, task type, trace context."""
    assert run.id is not None
    trace = run._trace_context if isinstance(run, RunRead) else run.trace_context
    return Message(run.id, run.priority, run.task_type, trace)


def dispatch(
    db: Database,
    broker: Broker | None,
    messages: Sequence[Message],
    *,
    now: datetime | None = None,
    stamped: bool = False,
) -> bool:
    """Publish committed pending runs, then stamp their ``dispatched_at``.

    ``stamped``: the runs were inserted with ``dispatched_at`` set already (see
    ``lifecycle.trigger_task(handing_over=True)``); nothing is written after a
    successful publish, and the stamp is cleared when the broker is unavailable, so
    the sweeper hands the runs over as soon as for unstamped ones.

    Returns False when nothing was handed over (no broker, or the broker is
    unavailable): the runs stay pending with the old stamp and the outbox sweeper
    publishes them later. Stamping after the publish means a crash in between costs a
    duplicate message at worst (harmless: workers claim in the database), never a run.
    Concurrent callers share batches (:mod:`schedd.services.dispatch`): one publish and
    one stamp for all the runs handed over at the same time.
    """
    if not messages:
        return True
    if broker is None:
        return False
    return dispatcher_for(db, broker).dispatch(messages, now or utcnow(), stamped=stamped)


def _read(session: Session, run_id: int) -> RunRead:
    run = session.get(TaskRun, run_id, populate_existing=True)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return RunRead.model_validate(run)


def get_run(session: Session, run_id: int) -> RunRead:
    return _read(session, run_id)


def _status(status: str) -> str:
    try:
        return RunStatus(status).value
    except ValueError:
        names = ", ".join(s.value for s in RunStatus)
        raise InvalidInput(
            f"status: unknown run status {status!r} (expected one of {names})", field="status"
        ) from None


def list_runs(
    session: Session,
    *,
    status: str | None = None,
    task: str | int | None = None,
    worker: str | None = None,
    since: datetime | None = None,
    page: int = 1,
    size: int = DEFAULT_PAGE_SIZE,
) -> Page[RunRead]:
    """Runs, newest first, filtered by status, task (id or name), worker id, and
    creation time (``created_at >= since``)."""
    query = select(TaskRun)
    if status is not None:
        query = query.where(TaskRun.status == _status(status))
    if task is not None:
        query = query.where(TaskRun.task_id == resolve(session, task).id)
    if worker is not None:
        query = query.where(TaskRun.worker_id == worker)
    if since is not None:
        if since.tzinfo is None:
            raise InvalidInput("since: must include a time zone (e.g. Z)", field="since")
        query = query.where(col(TaskRun.created_at) >= since)
    rows, total = fetch_page(session, query, col(TaskRun.id).desc(), page, size)
    items = [RunRead.model_validate(run) for run in rows]
    return Page[RunRead](items=items, total=total, page=page, size=size)


def task_runs(
    session: Session, task_ref: str | int, *, page: int = 1, size: int = DEFAULT_PAGE_SIZE
) -> Page[RunRead]:
    """One task's runs, newest first."""
    return list_runs(session, task=task_ref, page=page, size=size)


def next_fire_times(
    session: Session, task_ref: str | int, count: int = 5, *, now: datetime | None = None
) -> list[datetime]:
    """The task's next ``count`` scheduled times (1-100).

    An active task starts at its ``next_run_at`` (even when that is already due); a
    paused task shows the times it would fire if resumed now; a task without a
    schedule has none.
    """
    if not 1 <= count <= MAX_FIRE_PREVIEW:
        raise InvalidInput(f"count: must be between 1 and {MAX_FIRE_PREVIEW}", field="count")
    now = now or utcnow()
    task = resolve(session, task_ref)
    if task.schedule is None:
        return []
    schedule = cron.parse(task.schedule, task.timezone)
    times: list[datetime] = []
    after = now
    if task.status == TaskStatus.active and task.next_run_at is not None:
        times.append(task.next_run_at)
        after = task.next_run_at
    for moment in schedule.iter_after(after):
        if len(times) >= count:
            break
        times.append(moment)
    return times[:count]


def check_arguments(arguments: Any) -> list[str] | None:
    """A per-run argument override: None (use the task's) or a list of strings."""
    if arguments is None:
        return None
    if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
        raise InvalidInput("arguments: must be a list of strings", field="arguments")
    if len(arguments) > MAX_ARGUMENTS:
        raise InvalidInput(
            f"arguments: at most {MAX_ARGUMENTS} arguments, got {len(arguments)}",
            field="arguments",
        )
    return list(arguments)


def resolve_for_run(session: Session, ref: str | int) -> Task:
    """The task a manual run is about to be created for, locked only when its
    concurrency policy needs it.

    ``forbid`` and ``replace`` look at the task's active runs and then insert one: two
    such triggers must take turns, so the task row is locked (``SELECT ... FOR UPDATE``)
    and read again under the lock. ``allow`` needs no lock: the insert itself holds the
    task (the foreign key takes a key-share lock, so a concurrent delete waits or
    fails), and concurrent triggers of a busy task do not queue on one row.
    """
    task = resolve(session, ref)
    if ConcurrencyPolicy(task.concurrency_policy) is ConcurrencyPolicy.allow:
        return task
    assert task.id is not None
    return resolve(session, task.id, lock=True)


def start_manual_run(
    session: Session,
    task: Task,
    *,
    now: datetime,
    arguments: list[str] | None = None,
    scheduled_for: datetime | None = None,
    dispatched_at: datetime | None = None,
) -> RunRead:
    """Create a pending ``manual`` run of ``task`` (from :func:`resolve_for_run`: locked
    when its policy needs it), honouring its
    concurrency policy: ``forbid`` with an active run raises Conflict; ``replace``
    cancels the active runs after inserting the new one."""
    assert task.id is not None
    policy = ConcurrencyPolicy(task.concurrency_policy)
    active = None
    if policy is not ConcurrencyPolicy.allow:
        active = store.active_runs(session, [task.id]).get(task.id)
    if policy is ConcurrencyPolicy.forbid and active is not None:
        raise Conflict(
            f"task {task.name!r} already has an active run, {active}, and its "
            "concurrency_policy is forbid; cancel that run first"
        )
    span = tracing.start(
        "run.trigger", attributes={"sched.task_id": task.id, "sched.task": task.name}
    )
    row = store.run_row(
        task,
        trigger=Trigger.manual,
        status=RunStatus.pending,
        now=now,
        scheduled_for=scheduled_for,
        arguments=arguments,
        dispatched_at=dispatched_at,
        trace_context=tracing.traceparent(span),
    )
    # The whole row comes back from the insert: the trigger path reads nothing again.
    inserted = session.execute(sa.insert(store.runs).values(**row).returning(store.runs)).one()
    run = RunRead.model_validate(dict(inserted._mapping))
    run._trace_context = row["trace_context"]
    if span is not None:
        span.set("sched.run_id", run.id)
        span.end()
    if policy is ConcurrencyPolicy.replace and active is not None:
        store.cancel_active(
            session, task.id, reason=f"replaced by manual run {run.id}", now=now, keep=[run.id]
        )
    return run


def cancel_run(
    session: Session, run_id: int, *, actor: str | None = None, now: datetime | None = None
) -> RunRead:
    """Cancel a run: waiting or pending ones at once; a running one is asked to stop
    (``cancel_requested``; its worker kills it within seconds and records
    ``cancelled``). An ended run raises Conflict; an unknown one NotFound."""
    now = now or utcnow()
    runs = store.runs
    reason = f"cancelled by {actor or 'system'}"
    done = session.execute(
        sa.update(runs)
        .where(
            runs.c.id == run_id,
            runs.c.status.in_((RunStatus.waiting.value, RunStatus.pending.value)),
        )
        .values(status=RunStatus.cancelled.value, completed_at=now, error_message=reason)
        .returning(runs.c.task_id)
    ).first()
    outcome = "cancelled"
    if done is None:
        done = session.execute(
            sa.update(runs)
            .where(runs.c.id == run_id, runs.c.status == RunStatus.running.value)
            .values(cancel_requested=True)
            .returning(runs.c.task_id)
        ).first()
        outcome = "cancel_requested"
    if done is None:
        run = _read(session, run_id)
        raise Conflict(
            f"run {run_id} has already ended ({run.status}); only waiting, pending and "
            "running runs can be cancelled"
        )
    audit.record(session, actor, "run.cancel", f"run:{run_id}", detail={"result": outcome})
    return _read(session, run_id)


def retry_run(
    session: Session, run_id: int, *, actor: str | None = None, now: datetime | None = None
) -> RunRead:
    """Run an ended run again, by hand: a new pending ``manual`` run of the same task
    with the same ``scheduled_for`` and argument override, attempt count 0 (so it has
    the task's automatic retries ahead of it). Not a ``retry`` run: ``parent_run_id``
    stays reserved for the automatic retry, so re-running never blocks or duplicates
    it. The run must have ended (Conflict otherwise); the task's concurrency policy
    applies as for a manual trigger. The caller publishes the returned run."""
    now = now or utcnow()
    original = _read(session, run_id)
    if not RunStatus(original.status).terminal:
        raise Conflict(
            f"run {run_id} is still {original.status}; only an ended run can be run again"
        )
    task = resolve_for_run(session, original.task_id)
    run = start_manual_run(
        session,
        task,
        now=now,
        arguments=original.arguments,
        scheduled_for=original.scheduled_for,
    )
    audit.record(
        session,
        actor,
        "run.retry",
        f"run:{run_id}",
        detail={"task_id": original.task_id, "new_run_id": run.id},
    )
    return _read(session, run.id)
