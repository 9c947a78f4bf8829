"""The reaper: dead workers go offline, their runs become lost (then retried per policy).

Ages are judged by the DATABASE's clock (``db.now()``), never by this host's: workers
and schedulers on different hosts agree on it. Every change is one guarded UPDATE, so
the reaper is idempotent and any number of schedulers may run it at once:

- a worker whose ``last_heartbeat`` (or, if it never sent one, ``registered_at``) is
  older than ``heartbeat_timeout`` and that is not yet offline becomes ``offline``;
- a ``running`` run whose ``heartbeat_at`` (or, never refreshed, ``started_at``) is
  older than ``heartbeat_timeout`` becomes ``lost``, "worker <id> stopped heartbeating".
  A late completion from that worker is fenced off by (id, worker_id, claim, running);
- a ``running`` run past its timeout plus ``heartbeat_timeout`` whose worker is not
  alive (offline, unknown, or silent) becomes ``timeout``: nobody is left to kill it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from schedd.models import RunStatus, Worker, WorkerStatus
from schedd.scheduler import metrics, store

log = logging.getLogger("schedd.scheduler.reaper")

workers = Worker.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ReapedRun:
    run_id: int
    task_id: int
    worker_id: str | None
    status: str
    reason: str


@dataclass
class ReapResult:
    offline: list[tuple[str, datetime | None]] = field(default_factory=list)
    runs: list[ReapedRun] = field(default_factory=list)


def reap(
    session: Session,
    *,
    db_now: datetime,
    heartbeat_timeout: float,
    default_timeout: float,
) -> ReapResult:
    """Mark dead workers offline and end the runs nobody is running any more."""
    cutoff = db_now - timedelta(seconds=heartbeat_timeout)
    result = ReapResult()
    last_seen = sa.func.coalesce(workers.c.last_heartbeat, workers.c.registered_at)
    result.offline = [
        (worker_id, seen)
        for worker_id, seen in session.execute(
            sa.update(workers)
            .where(workers.c.status != WorkerStatus.offline.value, last_seen < cutoff)
            .values(status=WorkerStatus.offline.value)
            .returning(workers.c.id, workers.c.last_heartbeat)
        )
    ]
    runs = store.runs
    reason = (
        sa.literal("worker ")
        + sa.func.coalesce(runs.c.worker_id, "(none)")
        + sa.literal(" stopped heartbeating")
    )
    lost = session.execute(
        sa.update(runs)
        .where(
            runs.c.status == RunStatus.running.value,
            sa.func.coalesce(runs.c.heartbeat_at, runs.c.started_at, runs.c.created_at) < cutoff,
        )
        .values(status=RunStatus.lost.value, completed_at=db_now, error_message=reason)
        .returning(runs.c.id, runs.c.task_id, runs.c.worker_id, runs.c.error_message)
    )
    result.runs = [
        ReapedRun(run_id, task_id, worker_id, RunStatus.lost.value, message)
        for run_id, task_id, worker_id, message in lost
    ]
    result.runs += _end_overdue(session, db_now, cutoff, heartbeat_timeout, default_timeout)
    return result


def _end_overdue(
    session: Session,
    db_now: datetime,
    cutoff: datetime,
    heartbeat_timeout: float,
    default_timeout: float,
) -> list[ReapedRun]:
    """Running runs far past their timeout whose worker is not alive: end as timeout."""
    runs, tasks = store.runs, store.tasks
    worker_dead = sa.or_(
        workers.c.id.is_(None),
        workers.c.status == WorkerStatus.offline.value,
        sa.func.coalesce(workers.c.last_heartbeat, workers.c.registered_at) < cutoff,
    )
    candidates = session.execute(
        sa.select(
            runs.c.id,
            runs.c.task_id,
            runs.c.worker_id,
            runs.c.claim,
            runs.c.started_at,
            tasks.c.timeout_seconds,
        )
        .join(tasks, tasks.c.id == runs.c.task_id)
        .outerjoin(workers, workers.c.id == runs.c.worker_id)
        .where(runs.c.status == RunStatus.running.value, worker_dead)
    ).all()
    ended: list[ReapedRun] = []
    for run in candidates:
        timeout = float(run.timeout_seconds or default_timeout)
        if run.started_at is None:
            continue  # a claim always sets started_at; without it there is no age
        if run.started_at + timedelta(seconds=timeout + heartbeat_timeout) >= db_now:
            continue
        message = f"ran past its timeout of {timeout:g}s and its worker {run.worker_id} is gone"
        done = session.execute(
            sa.update(runs)
            .where(
                runs.c.id == run.id,
                runs.c.status == RunStatus.running.value,
                runs.c.claim == run.claim,
            )
            .values(status=RunStatus.timeout.value, completed_at=db_now, error_message=message)
            .returning(runs.c.id)
        ).first()
        if done is not None:
            ended.append(
                ReapedRun(run.id, run.task_id, run.worker_id, RunStatus.timeout.value, message)
            )
    return ended


def report(result: ReapResult, heartbeat_timeout: float) -> None:
    """Metrics and system events for a committed reap."""
    for worker_id, seen in result.offline:
        metrics.WORKERS_OFFLINE.inc()
        since = seen.isoformat().replace("+00:00", "Z") if seen else "never"
        log.warning(
            "worker %s is offline: last heartbeat %s, more than %gs ago",
            worker_id,
            since,
            heartbeat_timeout,
            extra={"worker_id": worker_id},
        )
    for run in result.runs:
        metrics.REAPED_RUNS.labels(status=run.status).inc()
        log.warning(
            "run %d (task %d) is %s: %s",
            run.run_id,
            run.task_id,
            run.status,
            run.reason,
            extra={"run_id": run.run_id, "task_id": run.task_id, "worker_id": run.worker_id},
        )
