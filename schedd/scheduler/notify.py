"""Wake schedulers early when tasks or runs change: PostgreSQL LISTEN/NOTIFY on
``sched_tasks``.

Optional by design: a scheduler that misses a notification still polls every
``scheduling_interval`` seconds. Services call :func:`notify_tasks_changed` inside their
transaction (PostgreSQL delivers the notification at commit, so a scheduler never wakes
before the change is visible); on SQLite it does nothing (one process, and the daemon
wakes its scheduler through ``Context.tasks_changed``).

Workers call :func:`runs_need_scheduler` in the transaction that records ended runs: a
run that will be retried (failed or timed out with attempts left) or that may release
dependents (completed, with dependents) notifies, so its retry is created at once and
then waits for its own ``not_before``, not for the next pass. Other ended runs notify
nothing: a busy worker must not turn the scheduler's sleep into a busy loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import sqlalchemy as sa
from sqlmodel import Session

from schedd.db import Database
from schedd.errors import first_line
from schedd.models import RunStatus, Task, TaskDependency, TaskRun

log = logging.getLogger("schedd.scheduler.notify")

CHANNEL = "sched_tasks"
RECONNECT_DELAY = 5.0
STOP_CHECK = 0.25  # how often the listener looks at its stop flag


def notify_tasks_changed(session: Session) -> None:
    """Tell listening schedulers (after this transaction commits) that tasks changed."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


_runs = TaskRun.__table__  # type: ignore[attr-defined]
_tasks = Task.__table__  # type: ignore[attr-defined]
_edges = TaskDependency.__table__  # type: ignore[attr-defined]
_RETRYABLE = (RunStatus.failed.value, RunStatus.timeout.value)


def runs_need_scheduler(session: Session, run_ids: Sequence[int]) -> bool:
    """Whether any of the ended runs ``run_ids`` has work for a scheduler (a retry to
    create, dependents to release); if so, also notify listening schedulers (PostgreSQL,
    delivered at commit). Call it in the transaction that ended the runs."""
    if not run_ids:
        return False
    retried = sa.and_(_runs.c.status.in_(_RETRYABLE), _runs.c.retry_count < _tasks.c.retry_count)
    releases = sa.and_(
        _runs.c.status == RunStatus.completed.value,
        sa.exists().where(_edges.c.depends_on_id == _runs.c.task_id),
    )
    found = session.execute(
        sa.select(sa.literal(1))
        .select_from(_runs.join(_tasks, _tasks.c.id == _runs.c.task_id))
        .where(_runs.c.id.in_(list(run_ids)), sa.or_(retried, releases))
        .limit(1)
    ).first()
    if found is None:
        return False
    notify_tasks_changed(session)
    return True


class TaskChangeListener:
    """A daemon thread that LISTENs on :data:`CHANNEL` and sets ``wake`` on each NOTIFY.

    It holds its own connection (not one of the pool's) and reconnects after errors;
    while disconnected the scheduler simply polls.
    """

    def __init__(self, db: Database, wake: threading.Event) -> None:
        url = db.engine.url.set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._wake = wake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        import psycopg  # only here: a SQLite-only process never loads it

        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=STOP_CHECK):
                            self._wake.set()
            except psycopg.Error as exc:
                log.warning(
                    "task change notifications unavailable (polling instead): %s",
                    first_line(exc),
                )
                self._stop.wait(RECONNECT_DELAY)
