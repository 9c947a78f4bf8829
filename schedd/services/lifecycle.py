"""Task lifecycle use cases: trigger a run now, pause, resume.

Shared by the HTTP API and `schedctl --db`; each works in the caller's session and is
recorded in the audit log. A trigger returns the pending run it created: publish it
after the commit (:func:`schedd.services.runs.dispatch`, or :func:`trigger_and_dispatch`
which does both).

Semantics (docs/decisions.md):

- A manual trigger creates a pending run now (``trigger=manual``) with an optional
  argument override. It honours the task's concurrency policy: ``forbid`` with an
  active run is refused (Conflict names the run), ``replace`` cancels the active runs.
  A paused task can be triggered: pausing stops the schedule, not the operator.
- Pause sets ``paused``, clears ``next_run_at`` and records ``paused_at``. Runs already
  created (and their retries) carry on.
- Resume sets ``active`` and ``next_run_at`` to the next fire time after now: the fires
  missed while paused do not burst out. Except with ``misfire_policy = fire_all``:
  then ``next_run_at`` is the first fire time after the pause, and the scheduler's
  ordinary misfire handling replays the missed times (at most ``max_catchup``).
- Pausing a paused task or resuming an active one changes nothing and is not an error.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from schedd import cron
from schedd.brokers.base import Broker
from schedd.db import Database
from schedd.models import MisfirePolicy, Task, TaskStatus
from schedd.scheduler import store
from schedd.scheduler.notify import notify_tasks_changed
from schedd.schemas import RunRead, TaskRead
from schedd.services import audit, runs
from schedd.services.tasks import check_function_call, read, resolve
from schedd.types import utcnow


def trigger_task(
    session: Session,
    ref: str | int,
    *,
    arguments: list[str] | None = None,
    actor: str | None = None,
    now: datetime | None = None,
    handing_over: bool = False,
) -> RunRead:
    """Create a pending manual run of the task now (see module doc for the policy).

    ``handing_over`` True when the caller publishes the run right after the commit
    (``runs.dispatch(..., stamped=True)``): the run is stamped as handed over in its
    own insert, so no second transaction is needed to stamp it, and no NOTIFY is sent
    (it only serves callers without a broker, and it serialises commits on
    PostgreSQL).
    """
    now = now or utcnow()
    arguments = runs.check_arguments(arguments)
    task = runs.resolve_for_run(session, ref)
    if arguments is not None:
        check_function_call(task.executor, task.command, arguments)
    run = runs.start_manual_run(
        session, task, now=now, arguments=arguments, dispatched_at=now if handing_over else None
    )
    audit.record(
        session,
        actor,
        "task.trigger",
        f"task:{task.id}",
        detail={"run_id": run.id, "arguments": arguments is not None},
    )
    if not handing_over:
        # Wakes schedulers on PostgreSQL, whose sweeper hands the run over when the
        # caller has no broker of its own (`schedctl --db`).
        notify_tasks_changed(session)
    return run


def trigger_and_dispatch(
    db: Database,
    broker: Broker | None,
    ref: str | int,
    *,
    arguments: list[str] | None = None,
    actor: str | None = None,
) -> RunRead:
    """:func:`trigger_task` in its own transaction, then publish the run."""
    with db.session() as session:
        run = trigger_task(
            session, ref, arguments=arguments, actor=actor, handing_over=broker is not None
        )
    runs.dispatch(db, broker, [runs.message_of(run)], stamped=True)
    return run


def pause_task(
    session: Session, ref: str | int, *, actor: str | None = None, now: datetime | None = None
) -> TaskRead:
    """Stop the task's schedule (no new fires) until it is resumed."""
    now = now or utcnow()
    task = resolve(session, ref)
    tasks = store.tasks
    changed = session.execute(
        sa.update(tasks)
        .where(tasks.c.id == task.id, tasks.c.status == TaskStatus.active.value)
        .values(status=TaskStatus.paused.value, next_run_at=None, paused_at=now, updated_at=now)
        .returning(tasks.c.id)
    ).first()
    audit.record(
        session, actor, "task.pause", f"task:{task.id}", detail={"changed": changed is not None}
    )
    session.refresh(task)
    return read(session, task)


def resume_time(task: Task, now: datetime) -> datetime | None:
    """The ``next_run_at`` a paused task gets when resumed at ``now``."""
    if task.schedule is None:
        return None
    schedule = cron.parse(task.schedule, task.timezone)
    if task.misfire_policy == MisfirePolicy.fire_all and task.paused_at is not None:
        first = schedule.next_after(task.paused_at)
        if first <= now:
            return first  # the fire pass replays the missed times, fire_all
    return schedule.next_after(now)


def resume_task(
    session: Session, ref: str | int, *, actor: str | None = None, now: datetime | None = None
) -> TaskRead:
    """Restart the task's schedule from now (fire_all: from the pause, see module doc)."""
    now = now or utcnow()
    task = resolve(session, ref, lock=True)
    tasks = store.tasks
    changed = None
    if task.status == TaskStatus.paused:
        changed = session.execute(
            sa.update(tasks)
            .where(tasks.c.id == task.id, tasks.c.status == TaskStatus.paused.value)
            .values(
                status=TaskStatus.active.value,
                next_run_at=resume_time(task, now),
                paused_at=None,
                updated_at=now,
            )
            .returning(tasks.c.id)
        ).first()
        notify_tasks_changed(session)
    audit.record(
        session, actor, "task.resume", f"task:{task.id}", detail={"changed": changed is not None}
    )
    session.refresh(task)
    return read(session, task)
