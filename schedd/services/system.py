"""System use cases: health, statistics, the stored system events, the audit log.

Every statistic is one aggregate query over an indexed column, cheap enough to serve
on each request and each Prometheus scrape.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from schedd import __version__
from schedd.errors import InvalidInput, SchedError, first_line
from schedd.models import (
    AuditEntry,
    Lease,
    RunStatus,
    SystemLog,
    Task,
    TaskRun,
    TaskStatus,
    Worker,
    WorkerStatus,
)
from schedd.redact import redact_text
from schedd.schemas import AuditRead, HealthRead, Page, RunCounts, StatsRead, SystemLogRead
from schedd.services.paging import DEFAULT_PAGE_SIZE, fetch_page
from schedd.types import utcnow

if TYPE_CHECKING:
    from schedd.brokers.base import Broker
    from schedd.db import Database

LEVELS = {
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# Ended runs that count for the success rate: cancelled and skipped runs did not try.
_TRIED = (RunStatus.completed, RunStatus.failed, RunStatus.timeout, RunStatus.lost)


@dataclass(frozen=True)
class Health:
    """The health report, and why each component in it that did not answer did not."""

    report: HealthRead
    reasons: dict[str, str] = field(default_factory=dict)  # "database"/"broker" -> why


_workers = Worker.__table__  # type: ignore[attr-defined]
_ISOLATION = (
    sa.select(_workers.c.isolation, sa.func.count())
    .where(_workers.c.status == WorkerStatus.active.value)
    .group_by(_workers.c.isolation)
)


def check_health(
    db: Database, broker: Broker | None, *, broker_timeout: float | None = None
) -> Health:
    """Can this process reach its database and its broker? (The API's /health and
    ``schedctl --db system health``.)

    ``ok`` when both answer, ``degraded`` when only the database does, ``unavailable``
    when the database does not (nothing works without it). The broker is ``none`` when
    there is no broker to ask. ``broker_timeout`` bounds the wait for the broker's
    answer (see :func:`broker_problem`).
    """
    reasons: dict[str, str] = {}
    pending: int | None = None
    oldest: float | None = None
    isolation: dict[str, int] | None = None
    skew: float | None = None
    writing = False
    try:
        with db.engine.begin() as conn:
            # The database probe is also the answer to "how are runs isolated": the
            # active workers by isolation mode (it replaces a plain SELECT 1).
            rows = conn.execute(_ISOLATION).all()
            pending, oldest = backlog(conn)
            skew = clock_skew(db, conn)
            writing = True
            write_probe(db, conn)
        # Committed: a full disk fails here, when SQLite appends to its write-ahead log.
        isolation = {mode or "unknown": count for mode, count in rows}
    except sa.exc.SQLAlchemyError as exc:
        reasons["database"] = ("cannot write: " if writing else "") + first_line(exc)
    database = "unavailable" if "database" in reasons else "ok"
    broker_state = "none"
    if broker is not None:
        problem = broker_problem(broker, broker_timeout)
        broker_state = "ok" if problem is None else "unavailable"
        if problem is not None:
            reasons["broker"] = problem
    if database != "ok":
        status = "unavailable"
    elif broker_state == "unavailable":
        status = "degraded"
    else:
        status = "ok"
    report = HealthRead(
        status=status,
        database=database,
        broker=broker_state,
        version=__version__,
        pending_runs=pending,
        oldest_pending_seconds=oldest,
        isolation=isolation,
        clock_skew_seconds=skew,
    )
    return Health(report, reasons)


_leases = Lease.__table__  # type: ignore[attr-defined]
HEALTH_ROW = "health"  # the leases row the health check writes


def write_probe(db: Database, conn: sa.Connection) -> None:
    """A small write in the caller's transaction, committed with it: the ``health``
    row of ``leases`` records who checked last and when (``expires_at``). Reads alone
    would answer while every write fails (a full disk, a read-only replica or file)."""
    now = utcnow()
    holder = f"{socket.gethostname()}:{os.getpid()}"[:200]
    insert = postgresql.insert(_leases) if db.is_postgres else sqlite.insert(_leases)
    conn.execute(
        insert.values(name=HEALTH_ROW, holder=holder, expires_at=now).on_conflict_do_update(
            index_elements=[_leases.c.name], set_={"holder": holder, "expires_at": now}
        )
    )


def clock_skew(db: Database, conn: sa.Connection) -> float:
    """This host's clock minus the database's, in seconds (0 on SQLite: same host)."""
    if not db.is_postgres:
        return 0.0
    before = datetime.now(UTC)
    database_now = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
    after = datetime.now(UTC)
    return round(((before + (after - before) / 2) - database_now).total_seconds(), 3)


def broker_problem(broker: Broker, timeout: float | None = None) -> str | None:
    """Why ``broker`` does not answer its health check, or None when it does.

    Any failure of the check counts (a client library may raise its own errors, not
    only ``Unavailable``). With a ``timeout`` the check runs in a daemon thread and a
    broker that has not answered by then is unavailable; the thread is left to give up
    on its own (its socket timeouts), so a short-lived process does not wait for it.
    """
    if timeout is None:
        return _probe(broker)
    outcome: list[str | None] = []
    thread = threading.Thread(
        target=lambda: outcome.append(_probe(broker)),
        name=f"health-{broker.name}",
        daemon=True,
    )
    thread.start()
    thread.join(timeout)
    if not outcome:
        return f"{broker.name}: no answer within {timeout:g} s"
    return outcome[0]


def _probe(broker: Broker) -> str | None:
    try:
        broker.health()
    except SchedError as exc:
        return first_line(exc)
    except Exception as exc:  # a library's own error (pika's handshake timeout...)
        return f"{broker.name}: {type(exc).__name__}: {first_line(exc)}"
    return None


def _counts(session: Session, column: Any, where: Any = None) -> dict[str, int]:
    query = sa.select(column, sa.func.count()).group_by(column)
    if where is not None:
        query = query.where(where)
    return {str(value): int(n) for value, n in session.execute(query).all()}


def tasks_by_status(session: Session) -> dict[str, int]:
    counts = dict.fromkeys((s.value for s in TaskStatus), 0)
    counts.update(_counts(session, col(Task.status)))
    return counts


def workers_by_status(session: Session) -> dict[str, int]:
    counts = dict.fromkeys((s.value for s in WorkerStatus), 0)
    counts.update(_counts(session, col(Worker.status)))
    return counts


def queue_depth(session: Session) -> int:
    """Runs waiting for a worker (pending)."""
    return backlog(session.connection())[0]


def backlog(conn: sa.Connection, now: datetime | None = None) -> tuple[int, float | None]:
    """Pending runs, and how long the oldest of them has waited (seconds; None when
    there is none). One query over the pending runs' partial index."""
    pending = col(TaskRun.status) == RunStatus.pending.value
    count, oldest = conn.execute(
        sa.select(sa.func.count(), sa.func.min(col(TaskRun.created_at))).where(pending)
    ).one()
    if oldest is None:
        return int(count), None
    if oldest.tzinfo is None:  # SQLite hands back naive UTC
        oldest = oldest.replace(tzinfo=UTC)
    age = ((now or utcnow()) - oldest).total_seconds()
    return int(count), round(max(0.0, age), 3)


def run_counts(session: Session, since: datetime, now: datetime) -> RunCounts:
    """Runs created since ``since``, by their current status."""
    by_status = dict.fromkeys((s.value for s in RunStatus), 0)
    by_status.update(_counts(session, col(TaskRun.status), col(TaskRun.created_at) >= since))
    tried = sum(by_status[s.value] for s in _TRIED)
    ended = sum(n for s, n in by_status.items() if RunStatus(s).terminal)
    minutes = max((now - since).total_seconds() / 60, 1e-9)
    return RunCounts(
        total=sum(by_status.values()),
        by_status=by_status,
        success_rate=None if tried == 0 else round(by_status["completed"] / tried, 4),
        throughput_per_minute=round(ended / minutes, 3),
    )


def stats(session: Session, *, started_at: datetime, now: datetime | None = None) -> StatsRead:
    """The system at a glance; ``started_at`` is when this API process started."""
    now = now or utcnow()
    pending, oldest = backlog(session.connection(), now)
    return StatsRead(
        version=__version__,
        uptime_seconds=round((now - started_at).total_seconds(), 3),
        time=now,
        tasks=tasks_by_status(session),
        runs_last_hour=run_counts(session, now - timedelta(hours=1), now),
        runs_last_day=run_counts(session, now - timedelta(days=1), now),
        workers=workers_by_status(session),
        queue_depth=pending,
        oldest_pending_seconds=oldest,
    )


def level_number(level: str) -> int:
    """The logging level of a name (``error``, ``WARNING``...); InvalidInput otherwise."""
    number = LEVELS.get(level.strip().lower())
    if number is None:
        raise InvalidInput(
            f"level: unknown level {level!r} (expected one of debug, info, warning, error, "
            "critical)",
            field="level",
        )
    return number


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidInput(f"{field}: must include a time zone (e.g. Z)", field=field)
    return value


def list_logs(
    session: Session,
    *,
    level: str | None = None,
    component: str | None = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    page: int = 1,
    size: int = DEFAULT_PAGE_SIZE,
) -> Page[SystemLogRead]:
    """Stored system events, newest first: level at or above ``level``, ``component``
    exactly, ``start_time <= time < end_time``."""
    query = select(SystemLog)
    if level:
        query = query.where(col(SystemLog.levelno) >= level_number(level))
    if component:
        query = query.where(SystemLog.component == component)
    if _aware(start_time, "start_time") is not None:
        query = query.where(col(SystemLog.time) >= start_time)
    if _aware(end_time, "end_time") is not None:
        query = query.where(col(SystemLog.time) < end_time)
    # By time: events of several processes are written in batches, so ids are not in
    # time order (a run's outcome may be stored before the fire that made it).
    order = (col(SystemLog.time).desc(), col(SystemLog.id).desc())
    rows, total = fetch_page(session, query, order, page, size)
    items = [SystemLogRead.model_validate(r) for r in rows]
    for item in items:  # rows stored by an older version were not redacted
        item.message = redact_text(item.message)
    return Page[SystemLogRead](items=items, total=total, page=page, size=size)


def list_audit(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    outcome: str | None = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    page: int = 1,
    size: int = DEFAULT_PAGE_SIZE,
) -> Page[AuditRead]:
    """Audit entries, newest first, filtered by exact actor, action, target, outcome and
    ``start_time <= time < end_time``."""
    query = select(AuditEntry)
    for column, value in (
        (AuditEntry.actor, actor),
        (AuditEntry.action, action),
        (AuditEntry.target, target),
        (AuditEntry.outcome, outcome),
    ):
        if value:
            query = query.where(column == value)
    if _aware(start_time, "start_time") is not None:
        query = query.where(col(AuditEntry.time) >= start_time)
    if _aware(end_time, "end_time") is not None:
        query = query.where(col(AuditEntry.time) < end_time)
    rows, total = fetch_page(session, query, col(AuditEntry.id).desc(), page, size)
    items = [AuditRead.model_validate(r) for r in rows]
    return Page[AuditRead](items=items, total=total, page=page, size=size)
