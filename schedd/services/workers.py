"""Worker use cases: register, heartbeat, list, show, drain, remove, deregister.

The worker role and the HTTP API (``POST /api/workers/{id}/heartbeat``) share
:func:`heartbeat`; operators reach :func:`drain_worker` and :func:`remove_worker`
through the API and ``schedctl``. Every state change is one guarded statement, and
times come from the database clock, which the reaper judges heartbeats by.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from schedd.errors import Conflict, NotFound, Unavailable
from schedd.models import RunStatus, TaskRun, Worker, WorkerStatus
from schedd.schemas import HeartbeatIn, Page, WorkerRead
from schedd.services import audit
from schedd.services.claims import db_ago, db_now
from schedd.services.paging import DEFAULT_PAGE_SIZE, fetch_page
from schedd.types import UTCDateTime, utcnow

workers = Worker.__table__  # type: ignore[attr-defined]
runs = TaskRun.__table__  # type: ignore[attr-defined]

ACTIVE = WorkerStatus.active.value
DRAINING = WorkerStatus.draining.value
OFFLINE = WorkerStatus.offline.value


def _read(row: Any) -> WorkerRead:
    return WorkerRead.model_validate(dict(row._mapping))


def _upsert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


# The key of the transaction lock that makes registrations one at a time on
# PostgreSQL while the cap is counted (SQLite's single writer already does).
_REGISTER_LOCK = 0x5CED_0017


class WorkerLimitReached(Unavailable):
    """Registering would make more active workers than ``scheduler.max_workers``."""

    code = "worker_limit"


def _check_capacity(session: Session, worker_id: str, max_workers: int, stale_after: float) -> None:
    """WorkerLimitReached when ``max_workers`` other workers are active.

    Active: not offline and heard from within ``stale_after`` seconds (a worker that
    died without deregistering stops counting when the reaper could judge it). The row
    being taken over (the same id) does not count.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(_REGISTER_LOCK)))
    active = session.execute(
        sa.select(sa.func.count())
        .select_from(workers)
        .where(
            workers.c.id != worker_id,
            workers.c.status != OFFLINE,
            workers.c.last_heartbeat >= db_ago(session, stale_after),
        )
    ).scalar_one()
    if active >= max_workers:
        raise WorkerLimitReached(
            f"worker {worker_id!r} refused: scheduler.max_workers is {max_workers} and "
            f"{active} {'worker is' if active == 1 else 'workers are'} active; stop or "
            "remove one, or raise scheduler.max_workers",
            field="scheduler.max_workers",
        )


def register(
    session: Session,
    *,
    worker_id: str,
    hostname: str,
    ip_address: str | None,
    task_types: Sequence[str],
    executor_types: Sequence[str],
    max_concurrent_tasks: int,
    pid: int,
    version: str,
    stale_after: float,
    port: int | None = None,
    force: bool = False,
    isolation: str | None = None,
    max_workers: int | None = None,
) -> WorkerRead:
    """Create or take over the workers row ``worker_id``, as active with a fresh heartbeat.

    With ``max_workers`` (``scheduler.max_workers``), a registration that would make
    more active workers than that is refused: WorkerLimitReached, nothing written.

    An existing row is taken over when it is offline, its last heartbeat is older than
    ``stale_after`` seconds, it is this same process (same host and pid), or ``force``
    (the caller checked that the previous holder on this host is dead). Otherwise two
    live workers would share one id: Conflict.
    """
    if max_workers is not None:
        _check_capacity(session, worker_id, max_workers, stale_after)
    now = db_now(session)
    values: dict[str, Any] = {
        "id": worker_id,
        "hostname": hostname,
        "ip_address": ip_address,
        "port": port,
        "task_types": list(task_types),
        "executor_types": list(executor_types),
        "max_concurrent_tasks": max_concurrent_tasks,
        "current_task_count": 0,
        "status": ACTIVE,
        "last_heartbeat": now,
        "registered_at": now,
        "load_average": None,
        "memory_usage": None,
        "cpu_usage": None,
        "pid": pid,
        "version": version,
        "isolation": isolation,
    }
    insert = _upsert(session)(workers).values(values)
    takeover = sa.or_(
        sa.true() if force else sa.false(),
        workers.c.status == OFFLINE,
        workers.c.last_heartbeat.is_(None),
        workers.c.last_heartbeat < db_ago(session, stale_after),
        sa.and_(workers.c.hostname == hostname, workers.c.pid == pid),
    )
    row = session.execute(
        insert.on_conflict_do_update(
            index_elements=[workers.c.id],
            set_={key: insert.excluded[key] for key in values if key != "id"},
            where=takeover,
        ).returning(*workers.c)
    ).first()
    if row is None:
        other = get_worker(session, worker_id)
        raise Conflict(
            f"worker id {worker_id!r} is in use by pid {other.pid} on {other.hostname} "
            f"(last heartbeat {other.last_heartbeat:%Y-%m-%dT%H:%M:%SZ}); stop that worker "
            "or give this one another worker.id",
            field="worker.id",
        )
    return _read(row)


@functools.cache
def _beat_statements(dialect: str) -> tuple[Any, Any, Any]:
    """The heartbeat's statements for ``dialect``, built once (they run at every beat of
    every worker): the worker's row, and the renewal of its running runs (all of them,
    or those of the bound list ``b_run_ids``). Times are the database clock: PostgreSQL's
    ``now()``, the same for both statements of the transaction; on SQLite, which runs in
    this process, the bound ``b_now``."""
    if dialect == "postgresql":
        now: Any = sa.func.now(type_=UTCDateTime())
    else:
        now = sa.bindparam("b_now", type_=UTCDateTime())
    beat = (
        sa.update(workers)
        .where(workers.c.id == sa.bindparam("b_worker"))
        .values(
            last_heartbeat=now,
            current_task_count=sa.bindparam("b_count"),
            load_average=sa.bindparam("b_load"),
            memory_usage=sa.bindparam("b_memory"),
            cpu_usage=sa.bindparam("b_cpu"),
            status=sa.case((workers.c.status == OFFLINE, ACTIVE), else_=workers.c.status),
        )
        .returning(*workers.c)
    )
    # SKIP LOCKED: a run locked right now is being written by its worker (output, its
    # end) or by the reaper; waiting for it could deadlock with a transaction that locks
    # several runs in another order, and the next heartbeat renews it anyway.
    held = (
        sa.select(runs.c.id)
        .where(
            runs.c.worker_id == sa.bindparam("b_worker"),
            runs.c.status == RunStatus.running.value,
        )
        .with_for_update(skip_locked=True)
    )
    listed = held.where(runs.c.id.in_(sa.bindparam("b_run_ids", expanding=True)))
    renew_all, renew_listed = (
        sa.update(runs).where(runs.c.id.in_(query.scalar_subquery())).values(heartbeat_at=now)
        for query in (held, listed)
    )
    return beat, renew_all, renew_listed


@functools.cache
def _one_beat_statements() -> tuple[Any, Any, Any]:
    """PostgreSQL: the heartbeat as one statement (the renewal a data-modifying CTE of
    the worker's update, which PostgreSQL always runs to completion), for no renewal,
    all running runs, or the listed ones. It also turns ``synchronous_commit`` off for
    its own transaction: a heartbeat lost in a crash of PostgreSQL is only a missed beat
    (the next one renews, and the reaper waits a whole timeout of reachability after an
    outage before judging), so its commit need not wait for the WAL flush."""
    beat, renew_all, renew_listed = _beat_statements("postgresql")
    relaxed = sa.select(sa.func.set_config("synchronous_commit", "off", True).label("setting")).cte(
        "relaxed"
    )
    beat_cte = beat.cte("beat")
    only = sa.select(beat_cte).where(sa.exists(sa.select(relaxed.c.setting)))
    return (
        only,
        only.add_cte(renew_all.cte("renew")),
        only.add_cte(renew_listed.cte("renew")),
    )


def heartbeat(
    session: Session,
    worker_id: str,
    beat: HeartbeatIn,
    *,
    run_ids: Sequence[int] | None = None,
) -> WorkerRead:
    """Record that the worker is alive, with its load; keep its running runs alive.

    ``run_ids`` names the runs the worker holds (the worker role passes them, so runs an
    earlier process under the same id left behind still age out and are reaped); None
    renews every running run of the worker (the HTTP API's heartbeat). A worker marked
    offline becomes active again; a draining one stays draining, and the returned
    status tells it so. NotFound when the worker was removed: it should register again.
    """
    params: dict[str, Any] = {
        "b_worker": worker_id,
        "b_count": beat.current_task_count,
        "b_load": beat.load_average,
        "b_memory": beat.memory_usage,
        "b_cpu": beat.cpu_usage,
        "b_now": utcnow(),  # SQLite only; PostgreSQL's statements use now()
    }
    if run_ids:
        params["b_run_ids"] = list(run_ids)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        only, renew_all, renew_listed = _one_beat_statements()
        statement = renew_all if run_ids is None else renew_listed if run_ids else only
        row = session.execute(statement, params).first()
        if row is None:
            raise NotFound(f"worker {worker_id!r} not found")
        return _read(row)
    update_worker, renew_all, renew_listed = _beat_statements(dialect)
    row = session.execute(update_worker, params).first()
    if row is None:
        raise NotFound(f"worker {worker_id!r} not found")
    if run_ids is None:
        session.execute(renew_all, params)
    elif run_ids:
        session.execute(renew_listed, params)
    return _read(row)


def deregister(session: Session, worker_id: str) -> None:
    """The worker is stopping: mark it offline with nothing running."""
    session.execute(
        sa.update(workers)
        .where(workers.c.id == worker_id)
        .values(status=OFFLINE, current_task_count=0)
    )


def running_counts(session: Session, worker_ids: Sequence[str]) -> dict[str, int]:
    """How many runs each of ``worker_ids`` holds running now, from the runs table.

    What a worker reports in its heartbeat is up to a heartbeat interval old (15 s in
    production) and stays behind when it goes offline; the runs are the truth."""
    if not worker_ids:
        return {}
    rows = session.execute(
        sa.select(runs.c.worker_id, sa.func.count())
        .where(runs.c.worker_id.in_(worker_ids), runs.c.status == RunStatus.running.value)
        .group_by(runs.c.worker_id)
    )
    return {worker_id: int(count) for worker_id, count in rows}


def _with_running(session: Session, items: Sequence[Worker]) -> list[WorkerRead]:
    counts = running_counts(session, [w.id for w in items])
    return [
        WorkerRead.model_validate(w).model_copy(update={"current_task_count": counts.get(w.id, 0)})
        for w in items
    ]


def get_worker(session: Session, worker_id: str) -> WorkerRead:
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise NotFound(f"worker {worker_id!r} not found")
    return _with_running(session, [worker])[0]


def list_workers(
    session: Session,
    *,
    status: str | None = None,
    page: int = 1,
    size: int = DEFAULT_PAGE_SIZE,
) -> Page[WorkerRead]:
    """Workers ordered by id, optionally only those with ``status``."""
    query = select(Worker)
    if status is not None:
        query = query.where(Worker.status == status)
    items, total = fetch_page(session, query, col(Worker.id), page, size)
    return Page[WorkerRead](items=_with_running(session, items), total=total, page=page, size=size)


def drain_worker(session: Session, worker_id: str, *, actor: str | None = None) -> WorkerRead:
    """Ask a worker to drain: it stops claiming, finishes or hands back its runs, and exits.

    The worker learns it from its next heartbeat. Draining a draining worker changes
    nothing; an offline worker cannot be drained (Conflict).
    """
    drained = mark_draining(session, worker_id)
    if drained is None:
        current = get_worker(session, worker_id)
        if current.status == OFFLINE:
            raise Conflict(f"worker {worker_id!r} is offline; there is nothing to drain")
        return current
    audit.record(session, actor, "worker.drain", f"worker:{worker_id}")
    return drained


def mark_draining(session: Session, worker_id: str) -> WorkerRead | None:
    """active -> draining (the worker itself on SIGTERM); None when it was not active."""
    row = session.execute(
        sa.update(workers)
        .where(workers.c.id == worker_id, workers.c.status == ACTIVE)
        .values(status=DRAINING)
        .returning(*workers.c)
    ).first()
    return None if row is None else _read(row)


def remove_worker(session: Session, worker_id: str, *, actor: str | None = None) -> None:
    """Delete an offline worker's row; a live worker must be drained first (Conflict)."""
    deleted = (
        session.connection()
        .execute(sa.delete(workers).where(workers.c.id == worker_id, workers.c.status == OFFLINE))
        .rowcount
    )
    if not deleted:
        current = get_worker(session, worker_id)
        raise Conflict(
            f"worker {worker_id!r} is {current.status}; drain it first (it goes offline "
            "when it stops) or wait until it is declared offline"
        )
    audit.record(session, actor, "worker.remove", f"worker:{worker_id}")
