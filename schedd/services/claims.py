"""Claiming runs and every later write of a claimed run, fenced.

A claim is one guarded statement, ``pending -> running``, that records the worker and
increments the run's ``claim`` counter. From then on the worker writes the run only
through :class:`Claim`: each write matches ``(id, worker_id, claim, status='running')``
and reports whether it matched. A write that matches nothing means the run was taken
away (the reaper marked it lost, an operator's cancel ended it, another worker holds
it now): the caller must stop the run and never retry the write as anything else.

All times written here come from the database clock (:func:`db_now`), since the reaper
judges ``heartbeat_at`` by it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from schedd.executors.cgroups import Limits
from schedd.models import RunStatus, Task, TaskRun
from schedd.services import output
from schedd.services.output import OutputBatch
from schedd.types import UTCDateTime, utcnow

runs = TaskRun.__table__  # type: ignore[attr-defined]
tasks = Task.__table__  # type: ignore[attr-defined]

RUNNING = RunStatus.running.value
PENDING = RunStatus.pending.value
RESULT_STATUSES = frozenset(
    {RunStatus.completed, RunStatus.failed, RunStatus.timeout, RunStatus.cancelled}
)


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def db_now(session: Session) -> sa.ColumnElement[datetime]:
    """The database's current time as an SQL expression.

    PostgreSQL's ``now()``; SQLite runs in this process, so its clock is this host's.
    """
    if _is_postgres(session):
        return sa.func.now(type_=UTCDateTime())
    return sa.literal(utcnow(), UTCDateTime())


def db_ago(session: Session, seconds: float) -> sa.ColumnElement[datetime]:
    """The database time ``seconds`` ago."""
    if _is_postgres(session):
        return sa.func.now(type_=UTCDateTime()) - sa.literal(
            timedelta(seconds=seconds), sa.Interval()
        )
    return sa.literal(utcnow() - timedelta(seconds=seconds), UTCDateTime())


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a run: the fence every later write of the run must pass."""

    run_id: int
    worker_id: str
    claim: int


@dataclass(frozen=True)
class ClaimedRun:
    """A run just claimed, with what its task says about how to run it."""

    claim: Claim
    task_id: int
    task_name: str
    task_type: str
    executor: str
    command: str
    arguments: list[str]  # the run's own arguments if it has them, else the task's
    metadata: dict[str, Any]
    timeout_seconds: int | None  # the task's; None = [scheduler] task_timeout
    environment: dict[str, str]  # the task's own variables
    run_as: str | None  # the task's run user; None: the worker's
    working_dir: str | None
    limits: Limits  # the task's memory_max_mb, cpu_max, pids_max
    priority: int
    retry_count: int
    scheduled_for: datetime | None
    created_at: datetime
    trace_context: str | None = None  # W3C traceparent of the span that created the run


_RETURNED = (
    runs.c.id,
    runs.c.task_id,
    runs.c.claim,
    runs.c.task_type,
    runs.c.priority,
    runs.c.retry_count,
    runs.c.scheduled_for,
    runs.c.created_at,
    runs.c.arguments,
    runs.c.trace_context,
)


def _claim_values(session: Session, worker_id: str) -> dict[str, Any]:
    now = db_now(session)
    return {
        "status": RUNNING,
        "worker_id": worker_id,
        "claim": runs.c.claim + 1,
        "started_at": now,
        "heartbeat_at": now,
        "output_bytes": 0,
    }


def _claimable(task_types: Sequence[str], executor_types: Sequence[str]) -> list[Any]:
    """Conditions on a run (and its task) this worker may claim."""
    return [
        runs.c.status == PENDING,
        sa.not_(runs.c.cancel_requested),
        runs.c.task_type.in_(list(task_types)),
        sa.exists().where(tasks.c.id == runs.c.task_id, tasks.c.executor.in_(list(executor_types))),
    ]


def claim_next(
    session: Session,
    worker_id: str,
    *,
    limit: int,
    task_types: Sequence[str],
    executor_types: Sequence[str],
) -> list[ClaimedRun]:
    """Claim up to ``limit`` pending runs, highest priority first, then oldest.

    One UPDATE over a sub-select; on PostgreSQL the sub-select locks with SKIP LOCKED,
    so concurrent workers take different runs instead of queueing on the same rows.
    SQLite serializes writers (BEGIN IMMEDIATE), so the same statement is exclusive.
    """
    if limit < 1:
        return []
    pick = (
        sa.select(runs.c.id)
        .where(*_claimable(task_types, executor_types))
        .order_by(runs.c.priority.desc(), runs.c.id)
        .limit(limit)
    )
    if _is_postgres(session):
        pick = pick.with_for_update(skip_locked=True)
    # A materialized CTE runs the locking sub-select exactly once. (PostgreSQL may
    # evaluate ``id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)`` again for each
    # row it scans, and then claim more than n runs.)
    picked = pick.cte("picked").prefix_with("MATERIALIZED")
    rows = session.execute(
        sa.update(runs)
        .where(runs.c.id.in_(sa.select(picked.c.id)), runs.c.status == PENDING)
        .values(_claim_values(session, worker_id))
        .returning(*_RETURNED)
    ).all()
    claimed = _with_tasks(session, worker_id, rows)
    claimed.sort(key=lambda run: (-run.priority, run.claim.run_id))
    return claimed


def claim_run(
    session: Session,
    run_id: int,
    worker_id: str,
    *,
    task_types: Sequence[str],
    executor_types: Sequence[str],
) -> ClaimedRun | None:
    """Claim run ``run_id`` (a broker delivered its id); None when it is not claimable.

    Use :func:`run_status` to tell "taken or ended" (ack the delivery) from "pending
    but not for this worker" (hand the delivery back).
    """
    claimed = claim_runs(
        session, [run_id], worker_id, task_types=task_types, executor_types=executor_types
    )
    return claimed[0] if claimed else None


def claim_runs(
    session: Session,
    run_ids: Sequence[int],
    worker_id: str,
    *,
    task_types: Sequence[str],
    executor_types: Sequence[str],
) -> list[ClaimedRun]:
    """Claim those of ``run_ids`` (delivered by a broker) that are claimable, in one
    guarded UPDATE; each claimed run's ``claim`` counter goes up by one, so every
    later write is fenced per run exactly as after :func:`claim_run`. Ids that are
    missing from the result were taken, ended, deleted or are not for this worker
    (:func:`run_statuses` tells which); an id given twice is claimed once.
    """
    ids = sorted(set(run_ids))
    if not ids:
        return []
    pick = sa.select(runs.c.id).where(runs.c.id.in_(ids), *_claimable(task_types, executor_types))
    if _is_postgres(session):
        # Lock in id order, so two workers given overlapping ids (duplicate messages)
        # wait for each other instead of deadlocking; a run the other one claimed
        # meanwhile no longer matches once its lock is free.
        pick = pick.order_by(runs.c.id).with_for_update()
    picked = pick.cte("picked").prefix_with("MATERIALIZED")
    rows = session.execute(
        sa.update(runs)
        .where(runs.c.id.in_(sa.select(picked.c.id)), runs.c.status == PENDING)
        .values(_claim_values(session, worker_id))
        .returning(*_RETURNED)
    ).all()
    claimed = _with_tasks(session, worker_id, rows)
    claimed.sort(key=lambda run: run.claim.run_id)
    return claimed


def run_status(session: Session, run_id: int) -> str | None:
    return run_statuses(session, [run_id]).get(run_id)


def run_statuses(session: Session, run_ids: Sequence[int]) -> dict[int, str]:
    """The status of each of ``run_ids`` that exists."""
    if not run_ids:
        return {}
    query = sa.select(runs.c.id, runs.c.status).where(runs.c.id.in_(sorted(set(run_ids))))
    return {row.id: row.status for row in session.execute(query)}


def _with_tasks(session: Session, worker_id: str, rows: Sequence[Any]) -> list[ClaimedRun]:
    if not rows:
        return []
    # A run claimed before (handed back by a draining worker) starts its output over.
    output.discard(session, [row.id for row in rows if row.claim > 1])
    task_rows = session.execute(
        sa.select(
            tasks.c.id,
            tasks.c.name,
            tasks.c.executor,
            tasks.c.command,
            tasks.c.arguments,
            tasks.c["metadata"],
            tasks.c.timeout_seconds,
            tasks.c.environment,
            tasks.c.run_as,
            tasks.c.working_dir,
            tasks.c.memory_max_mb,
            tasks.c.cpu_max,
            tasks.c.pids_max,
        ).where(tasks.c.id.in_({row.task_id for row in rows}))
    ).all()
    by_id = {task.id: task for task in task_rows}
    claimed = []
    for row in rows:
        task = by_id[row.task_id]
        claimed.append(
            ClaimedRun(
                claim=Claim(row.id, worker_id, row.claim),
                task_id=row.task_id,
                task_name=task.name,
                task_type=row.task_type,
                executor=task.executor,
                command=task.command,
                arguments=list(row.arguments if row.arguments is not None else task.arguments),
                metadata=dict(task.metadata or {}),
                timeout_seconds=task.timeout_seconds,
                environment=dict(task.environment or {}),
                run_as=task.run_as,
                working_dir=task.working_dir,
                limits=Limits(task.memory_max_mb, task.cpu_max, task.pids_max),
                priority=row.priority,
                retry_count=row.retry_count,
                scheduled_for=row.scheduled_for,
                created_at=row.created_at,
                trace_context=row.trace_context,
            )
        )
    return claimed


def _fence(claim: Claim) -> list[Any]:
    return [
        runs.c.id == claim.run_id,
        runs.c.worker_id == claim.worker_id,
        runs.c.claim == claim.claim,
        runs.c.status == RUNNING,
    ]


def _fenced_update(session: Session, claim: Claim, values: dict[str, Any]) -> bool:
    """UPDATE the run only if ``claim`` still holds it; True when it did."""
    result = session.connection().execute(sa.update(runs).where(*_fence(claim)).values(values))
    return result.rowcount == 1


@dataclass(frozen=True)
class Final:
    """A run's end as its worker reports it (completed, failed, timeout, cancelled)."""

    claim: Claim
    status: RunStatus
    exit_code: int | None
    execution_time: float
    error_message: str | None
    result: str | None
    batch: OutputBatch | None = None  # its last output
    cpu_seconds: float | None = None
    max_rss_mb: float | None = None

    def __post_init__(self) -> None:
        if self.status not in RESULT_STATUSES:
            raise ValueError(f"a worker cannot end a run as {self.status!r}")


# PostgreSQL: several runs' fenced writes as one UPDATE joined to the batch, sent as
# one JSON parameter (see scheduler.store._insert_fires_json for why JSON). Each row
# of the batch carries its own fence (id, worker, claim), and the join matches a run
# only while that claim holds it: a run taken away matches nothing and is missing from
# RETURNING, exactly as its own UPDATE would have matched nothing.
_FENCE_COLUMNS = {"id": "bigint", "worker_id": "text", "claim": "integer"}
_FINAL_COLUMNS = {
    "status": "text",
    "exit_code": "integer",
    "execution_time": "double precision",
    "error_message": "text",
    "result": "text",
    "cpu_seconds": "double precision",
    "max_rss_mb": "double precision",
    "output_bytes": "bigint",  # null: unchanged (no output with the report)
}


def _batch_update(assignments: str, columns: dict[str, str]) -> sa.TextClause:
    types = ", ".join(f'"{name}" {kind}' for name, kind in {**_FENCE_COLUMNS, **columns}.items())
    return sa.text(
        f"UPDATE task_runs AS r SET {assignments} "
        f"FROM json_to_recordset(CAST(:rows AS json)) AS v({types}) "
        "WHERE r.id = v.id AND r.worker_id = v.worker_id AND r.claim = v.claim "
        f"AND r.status = '{RUNNING}' RETURNING r.id"
    )


_FINISH_MANY = _batch_update(
    "status = v.status, completed_at = now(), exit_code = v.exit_code, "
    "execution_time = v.execution_time, error_message = v.error_message, "
    "result = v.result, cpu_seconds = v.cpu_seconds, max_rss_mb = v.max_rss_mb, "
    "output_bytes = COALESCE(v.output_bytes, r.output_bytes)",
    _FINAL_COLUMNS,
)
_OUTPUT_MANY = _batch_update("output_bytes = v.output_bytes", {"output_bytes": "bigint"})


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: such a measurement is recorded as unknown."""
    return value if value is None or math.isfinite(value) else None


def _fence_row(claim: Claim) -> dict[str, Any]:
    return {"id": claim.run_id, "worker_id": claim.worker_id, "claim": claim.claim}


def _batch_written(
    session: Session, statement: sa.TextClause, rows: list[dict[str, Any]]
) -> set[int]:
    payload = json.dumps(rows, separators=(",", ":"))
    return {run_id for (run_id,) in session.execute(statement, {"rows": payload})}


def report_output(session: Session, claim: Claim, batch: OutputBatch) -> bool:
    """Store output of a running run; False (nothing written) when it is no longer ours."""
    return claim.run_id in report_outputs(session, [(claim, batch)])


def report_outputs(session: Session, items: Sequence[tuple[Claim, OutputBatch]]) -> set[int]:
    """Store new output of several running runs, each fenced by its own claim; returns
    the ids of the runs written (a run missing from it is no longer ours, and nothing
    of it was written). One UPDATE for all of them on PostgreSQL."""
    if not items:
        return set()
    if _is_postgres(session):
        rows = [{**_fence_row(claim), "output_bytes": batch.total} for claim, batch in items]
        written = _batch_written(session, _OUTPUT_MANY, rows)
    else:  # SQLite runs in this process: a statement per run costs no round trip
        written = {
            claim.run_id
            for claim, batch in items
            if _fenced_update(session, claim, {"output_bytes": batch.total})
        }
    output.store_many(session, [(c.run_id, b) for c, b in items if c.run_id in written])
    return written


def finish(
    session: Session,
    claim: Claim,
    *,
    status: RunStatus,
    exit_code: int | None,
    execution_time: float,
    error_message: str | None,
    result: str | None,
    batch: OutputBatch | None = None,
    cpu_seconds: float | None = None,
    max_rss_mb: float | None = None,
) -> bool:
    """Record the end of a run (completed, failed, timeout, cancelled) with its last output.

    False, with nothing written, when the run is no longer this claim's.
    """
    final = Final(
        claim,
        status,
        exit_code,
        execution_time,
        error_message,
        result,
        batch,
        cpu_seconds,
        max_rss_mb,
    )
    return claim.run_id in finish_many(session, [final])


def finish_many(session: Session, finals: Sequence[Final]) -> set[int]:
    """Record the ends of several runs, each fenced by its own claim, with their last
    output; returns the ids of the runs written. A run missing from it is no longer
    its claim's, and nothing of it was written. One UPDATE for all on PostgreSQL."""
    if not finals:
        return set()
    if _is_postgres(session):
        rows = [
            {
                **_fence_row(final.claim),
                "status": final.status.value,
                "exit_code": final.exit_code,
                "execution_time": _finite(final.execution_time),
                "error_message": final.error_message,
                "result": final.result,
                "cpu_seconds": _finite(final.cpu_seconds),
                "max_rss_mb": _finite(final.max_rss_mb),
                "output_bytes": final.batch.total if final.batch is not None else None,
            }
            for final in finals
        ]
        written = _batch_written(session, _FINISH_MANY, rows)
    else:  # SQLite runs in this process: a statement per run costs no round trip
        written = {final.claim.run_id for final in finals if _finish_one(session, final)}
    output.store_many(
        session,
        [
            (final.claim.run_id, final.batch)
            for final in finals
            if final.batch is not None and final.claim.run_id in written
        ],
    )
    return written


def recorded(session: Session, finals: Sequence[Final]) -> set[int]:
    """Those of ``finals`` whose run already ended as reported under the same claim
    (the worker's guard wrote it: :mod:`schedd.executors.guardproc`)."""
    if not finals:
        return set()
    rows = session.execute(
        sa.select(runs.c.id, runs.c.worker_id, runs.c.claim, runs.c.status).where(
            runs.c.id.in_([final.claim.run_id for final in finals])
        )
    ).all()
    by_id = {row.id: row for row in rows}
    found = set()
    for final in finals:
        row = by_id.get(final.claim.run_id)
        if (
            row is not None
            and (row.worker_id, row.claim) == (final.claim.worker_id, final.claim.claim)
            and row.status == final.status.value
        ):
            found.add(final.claim.run_id)
    return found


def _finish_one(session: Session, final: Final) -> bool:
    values: dict[str, Any] = {
        "status": final.status.value,
        "completed_at": db_now(session),
        "exit_code": final.exit_code,
        "execution_time": final.execution_time,
        "error_message": final.error_message,
        "result": final.result,
        "cpu_seconds": final.cpu_seconds,
        "max_rss_mb": final.max_rss_mb,
    }
    if final.batch is not None:
        values["output_bytes"] = final.batch.total
    return _fenced_update(session, final.claim, values)


def hand_back(
    session: Session, claim: Claim, *, batch: OutputBatch | None = None
) -> RunStatus | None:
    """Give a run this worker did not finish back to the queue; None when not ours.

    The run becomes ``pending`` again (no worker, same attempt), or ``cancelled`` when an
    operator asked to cancel it meanwhile. The caller publishes a pending run again.
    """
    cancelled = RunStatus.cancelled.value
    row = session.execute(
        sa.update(runs)
        .where(*_fence(claim))
        .values(
            output_bytes=batch.total if batch is not None else runs.c.output_bytes,
            status=sa.case((runs.c.cancel_requested, cancelled), else_=PENDING),
            worker_id=sa.case((runs.c.cancel_requested, runs.c.worker_id), else_=None),
            started_at=sa.case((runs.c.cancel_requested, runs.c.started_at), else_=None),
            heartbeat_at=None,
            completed_at=sa.case((runs.c.cancel_requested, db_now(session)), else_=None),
            error_message=sa.case(
                (runs.c.cancel_requested, "cancelled by request while the worker stopped"),
                else_=runs.c.error_message,
            ),
            dispatched_at=db_now(session),
        )
        .returning(runs.c.status)
    ).first()
    if row is None:
        return None
    if batch is not None:
        output.store(session, claim.run_id, batch)
    return RunStatus(row.status)


@dataclass(frozen=True)
class RunChecks:
    cancel: frozenset[int]  # runs an operator asked to cancel
    gone: frozenset[int]  # runs that are no longer this worker's (lost, ended, re-claimed)


def check(session: Session, claims: Sequence[Claim]) -> RunChecks:
    """One query for all of a worker's running runs: which to cancel, which are gone."""
    if not claims:
        return RunChecks(frozenset(), frozenset())
    rows = session.execute(
        sa.select(
            runs.c.id, runs.c.status, runs.c.worker_id, runs.c.claim, runs.c.cancel_requested
        ).where(runs.c.id.in_([c.run_id for c in claims]))
    ).all()
    by_id = {row.id: row for row in rows}
    cancel: set[int] = set()
    gone: set[int] = set()
    for held in claims:
        row = by_id.get(held.run_id)
        if (
            row is None
            or row.status != RUNNING
            or row.worker_id != held.worker_id
            or row.claim != held.claim
        ):
            gone.add(held.run_id)
        elif row.cancel_requested:
            cancel.add(held.run_id)
    return RunChecks(frozenset(cancel), frozenset(gone))
