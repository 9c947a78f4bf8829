"""Reads the web dashboard needs beside the API's: runs per hour, failing tasks, the
newest outcomes of many tasks at once, a task's neighbours, a run's retry chain, the
recent runs for a timeline and the scheduler's health.

Each is one or two queries over an existing index, bounded by a time window or a
limit, so a page stays fast with a million runs in the database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from schedd.models import Lease, RunStatus, Task, TaskDependency, TaskRun, TaskStatus
from schedd.schemas import RunRead
from schedd.services.paging import check_page
from schedd.types import utcnow

runs = TaskRun.__table__  # type: ignore[attr-defined]
tasks = Task.__table__  # type: ignore[attr-defined]
deps = TaskDependency.__table__  # type: ignore[attr-defined]
leases = Lease.__table__  # type: ignore[attr-defined]

FAILED = (RunStatus.failed.value, RunStatus.timeout.value, RunStatus.lost.value)
_FAILED_LITERAL = sa.text("task_runs.status IN (" + ", ".join(f"'{v}'" for v in FAILED) + ")")
# Counts of past hours and the tags in use are kept this long per database (in this
# process): an overview every few seconds must not count a day of runs each time.
PAST_HOURS_SECONDS = 300.0
TAGS_SECONDS = 60.0
FAILING_SECONDS = 30.0
_cache: dict[tuple[str, ...], tuple[float, Any]] = {}
_cache_lock = threading.Lock()


def _cached(key: tuple[str, ...], seconds: float) -> Any:
    with _cache_lock:
        entry = _cache.get(key)
    if entry is not None and time.monotonic() - entry[0] < seconds:
        return entry[1]
    return None


def _keep(key: tuple[str, ...], value: Any) -> None:
    with _cache_lock:
        _cache[key] = (time.monotonic(), value)


MAX_STRIP = 20
MAX_TIMELINE_RUNS = 500


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite hands back naive UTC
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True)
class HourCounts:
    """Runs created in one hour, by status."""

    start: datetime
    by_status: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


def _count_hours(session: Session, start: datetime, hours: int) -> list[HourCounts]:
    end = start + timedelta(hours=hours)
    if session.get_bind().dialect.name == "postgresql":
        bucket: sa.ColumnElement[float] = sa.func.floor(
            sa.extract("epoch", runs.c.created_at - sa.literal(start)) / 3600
        )
    else:
        seconds = sa.func.strftime("%s", runs.c.created_at) - int(start.timestamp())
        bucket = sa.cast(seconds / 3600, sa.Integer)
    rows = session.execute(
        sa.select(bucket.label("bucket"), runs.c.status, sa.func.count())
        .where(runs.c.created_at >= start, runs.c.created_at < end)
        .group_by(bucket, runs.c.status)
    ).all()
    result = [HourCounts(start + timedelta(hours=i), {}) for i in range(hours)]
    for index, status, count in rows:
        i = int(index)
        if 0 <= i < hours:
            result[i].by_status[status] = result[i].by_status.get(status, 0) + int(count)
    return result


def runs_per_hour(
    session: Session, hours: int = 24, now: datetime | None = None, *, cached: bool = True
) -> list[HourCounts]:
    """Runs created in each of the last ``hours`` whole hours (the current one last),
    by their current status: grouped queries over the created_at index. The current
    hour is counted on every call; the earlier hours at most every
    ``PAST_HOURS_SECONDS`` (``cached``), so a run of an earlier hour that ends shows
    its outcome there within minutes."""
    now = now or utcnow()
    current = now.replace(minute=0, second=0, microsecond=0)
    start = current - timedelta(hours=hours - 1)
    key = ("hours", str(session.get_bind().engine.url), start.isoformat(), str(hours))
    past: list[HourCounts] | None = _cached(key, PAST_HOURS_SECONDS) if cached else None
    if past is None:
        past = _count_hours(session, start, hours - 1)
        if cached:
            _keep(key, past)
    return [*past, *_count_hours(session, current, 1)]


@dataclass(frozen=True)
class FailingTask:
    task_id: int
    name: str
    failures: int
    last_failure: datetime | None
    last_run_id: int


def failing_tasks(
    session: Session,
    since: timedelta = timedelta(hours=24),
    limit: int = 10,
    now: datetime | None = None,
    *,
    cached: bool = True,
) -> list[FailingTask]:
    """Tasks with runs that failed, timed out or were lost (ended) in the window, most
    failures first; kept ``FAILING_SECONDS`` per process (``cached``)."""
    now = now or utcnow()
    key = ("failing", str(session.get_bind().engine.url), str(since), str(limit))
    found: list[FailingTask] | None = _cached(key, FAILING_SECONDS) if cached else None
    if found is None:
        found = _failing_tasks(session, now - since, limit)
        if cached:
            _keep(key, found)
    return found


def _failing_tasks(session: Session, start: datetime, limit: int) -> list[FailingTask]:
    counted = (
        sa.select(
            runs.c.task_id,
            sa.func.count().label("failures"),
            sa.func.max(runs.c.completed_at).label("last_failure"),
            sa.func.max(runs.c.id).label("last_run_id"),
        )
        # Matches the partial index of retry candidates (completed_at of failed,
        # timed-out and lost runs): only the failures are read, not the day's runs.
        # (literal values: SQLite proves a partial index only against constants).
        .where(runs.c.completed_at >= start, _FAILED_LITERAL)
        .group_by(runs.c.task_id)
        .subquery()
    )
    rows = session.execute(
        sa.select(
            counted.c.task_id,
            tasks.c.name,
            counted.c.failures,
            counted.c.last_failure,
            counted.c.last_run_id,
        )
        .join(tasks, tasks.c.id == counted.c.task_id)
        .order_by(counted.c.failures.desc(), counted.c.last_run_id.desc())
        .limit(limit)
    ).all()
    return [
        FailingTask(r.task_id, r.name, int(r.failures), _aware(r.last_failure), r.last_run_id)
        for r in rows
    ]


@dataclass(frozen=True)
class Outcome:
    run_id: int
    status: str
    created_at: datetime


_NEWEST = (
    sa.select(runs.c.id, runs.c.status, runs.c.created_at)
    .where(runs.c.task_id == sa.bindparam("task_id"))
    .order_by(runs.c.id.desc())
    .limit(sa.bindparam("count"))
)


def recent_outcomes(
    session: Session, task_ids: Sequence[int], count: int = MAX_STRIP
) -> dict[int, list[Outcome]]:
    """The newest ``count`` runs of each task, oldest first: one indexed range per task
    (task_id, id), however long each task's history is. One small statement compiled
    once and run per task costs less than compiling a UNION of fifty of them."""
    found: dict[int, list[Outcome]] = {}
    for task_id in task_ids:
        rows = session.execute(_NEWEST, {"task_id": task_id, "count": count}).all()
        found[task_id] = [Outcome(r.id, r.status, _aware(r.created_at)) for r in reversed(rows)]  # type: ignore[arg-type]
    return found


def running_runs(
    session: Session, worker_ids: Sequence[str], limit: int = 500
) -> dict[str, list[int]]:
    """The ids of the runs each worker is running: one query over the running runs."""
    found: dict[str, list[int]] = {worker_id: [] for worker_id in worker_ids}
    if not worker_ids:
        return found
    rows = session.execute(
        sa.select(runs.c.worker_id, runs.c.id)
        .where(runs.c.status == RunStatus.running.value, runs.c.worker_id.in_(worker_ids))
        .limit(limit)  # no ORDER BY: SQLite would walk the whole table in id order
    )
    for worker_id, run_id in rows:
        found[worker_id].append(run_id)
    for ids in found.values():
        ids.sort()
    return found


@dataclass(frozen=True)
class RunsPage:
    """One page of runs, newest first, and whether an older page exists (no total:
    counting a long history costs more than the page)."""

    items: list[RunRead]
    page: int
    more: bool


def task_history(session: Session, task_id: int, page: int = 1, size: int = 25) -> RunsPage:
    check_page(page, size)
    rows = list(
        session.exec(
            select(TaskRun)
            .where(TaskRun.task_id == task_id)
            .order_by(col(TaskRun.id).desc())
            .offset((page - 1) * size)
            .limit(size + 1)
        )
    )
    items = [RunRead.model_validate(run) for run in rows[:size]]
    return RunsPage(items, page, len(rows) > size)


@dataclass(frozen=True)
class TaskNode:
    id: int
    name: str
    status: str


@dataclass
class Neighbours:
    """A task's upstream tasks (it depends on them) and downstream tasks (they depend
    on it), two levels each way."""

    upstream: list[tuple[TaskNode, TaskNode]] = field(default_factory=list)  # (from, to)
    downstream: list[tuple[TaskNode, TaskNode]] = field(default_factory=list)
    nodes: dict[int, TaskNode] = field(default_factory=dict)


def _nodes(session: Session, ids: set[int]) -> dict[int, TaskNode]:
    if not ids:
        return {}
    rows = session.execute(
        sa.select(tasks.c.id, tasks.c.name, tasks.c.status).where(tasks.c.id.in_(ids))
    ).all()
    return {r.id: TaskNode(r.id, r.name, r.status) for r in rows}


def _edges(
    session: Session, task_id: int, depth: int, limit: int, *, upstream: bool
) -> list[tuple[int, int]]:
    """Dependency edges (from, to) up to ``depth`` hops from ``task_id``, at most
    ``limit``: upstream to the tasks it depends on, else to the tasks that depend on it."""
    near = deps.c.task_id if upstream else deps.c.depends_on_id
    edges: list[tuple[int, int]] = []
    frontier = {task_id}
    for _ in range(depth):
        if not frontier or len(edges) >= limit:
            break
        rows = session.execute(
            sa.select(deps.c.task_id, deps.c.depends_on_id)
            .where(near.in_(frontier))
            .limit(limit - len(edges))
        ).all()
        edges += [(r.depends_on_id, r.task_id) for r in rows]
        frontier = {r.depends_on_id if upstream else r.task_id for r in rows}
    return edges


def neighbours(session: Session, task_id: int, depth: int = 2, limit: int = 40) -> Neighbours:
    """Edges around ``task_id`` up to ``depth`` hops each way, at most ``limit`` per
    direction (a hub task with hundreds of dependants is cut, not drawn unreadable)."""
    edges_up = _edges(session, task_id, depth, limit, upstream=True)
    edges_down = _edges(session, task_id, depth, limit, upstream=False)
    ids = {task_id} | {i for e in edges_up + edges_down for i in e}
    nodes = _nodes(session, ids)
    result = Neighbours(nodes=nodes)
    result.upstream = [(nodes[a], nodes[b]) for a, b in edges_up if a in nodes and b in nodes]
    result.downstream = [(nodes[a], nodes[b]) for a, b in edges_down if a in nodes and b in nodes]
    return result


def retry_chain(session: Session, run_id: int, limit: int = 50) -> list[int]:
    """The ids of the attempts a run belongs to, first attempt first: its parents
    (``parent_run_id``) back to the first, and the retries that followed it."""
    chain = [run_id]
    current = run_id
    while len(chain) < limit:
        parent = session.execute(
            sa.select(runs.c.parent_run_id).where(runs.c.id == current)
        ).scalar_one_or_none()
        if parent is None:
            break
        chain.insert(0, parent)
        current = parent
    current = run_id
    while len(chain) < limit:
        child = session.execute(
            sa.select(runs.c.id).where(runs.c.parent_run_id == current)
        ).scalar_one_or_none()
        if child is None:
            break
        chain.append(child)
        current = child
    return chain


@dataclass(frozen=True)
class TimelineRun:
    run_id: int
    task_id: int
    task_name: str
    status: str
    start: datetime
    end: datetime | None


def _bar(row: Any, task_id: int, task_name: str) -> TimelineRun:
    """A run as a bar from its start (or its creation) to its end (None: not ended)."""
    start = _aware(row.started_at) or _aware(row.created_at)
    assert start is not None
    return TimelineRun(row.id, task_id, task_name, row.status, start, _aware(row.completed_at))


def timeline(
    session: Session,
    hours: float = 6,
    now: datetime | None = None,
    limit: int = MAX_TIMELINE_RUNS,
    task_id: int | None = None,
) -> list[TimelineRun]:
    """Runs created in the last ``hours`` (newest ``limit`` of them), with their task
    names, for drawing as bars from start (or creation) to end (or now)."""
    now = now or utcnow()
    query = (
        sa.select(
            runs.c.id,
            runs.c.task_id,
            tasks.c.name,
            runs.c.status,
            runs.c.created_at,
            runs.c.started_at,
            runs.c.completed_at,
        )
        .join(tasks, tasks.c.id == runs.c.task_id)
        .where(runs.c.created_at >= now - timedelta(hours=hours))
        .order_by(runs.c.created_at.desc())
        .limit(limit)
    )
    if task_id is not None:
        query = query.where(runs.c.task_id == task_id)
    return [_bar(r, r.task_id, r.name) for r in session.execute(query)]


def durations(session: Session, task_id: int, count: int = 50) -> list[TimelineRun]:
    """A task's newest ``count`` runs, oldest first, for its duration chart."""
    rows = session.execute(
        sa.select(
            runs.c.id, runs.c.status, runs.c.created_at, runs.c.started_at, runs.c.completed_at
        )
        .where(runs.c.task_id == task_id)
        .order_by(runs.c.id.desc())
        .limit(count)
    ).all()
    return [_bar(r, task_id, "") for r in reversed(rows)]


@dataclass(frozen=True)
class SchedulerHealth:
    """What says the scheduler is firing: tasks overdue beyond the grace period (none
    when it keeps up), its newest scheduled fire, and its lease on SQLite."""

    overdue: int
    last_fire: datetime | None
    lease_holder: str | None
    lease_expires: datetime | None

    @property
    def ok(self) -> bool:
        return self.overdue == 0


def scheduler_health(
    session: Session, grace_seconds: float, now: datetime | None = None
) -> SchedulerHealth:
    now = now or utcnow()
    overdue = session.execute(
        sa.select(sa.func.count())
        .select_from(tasks)
        .where(
            tasks.c.status == TaskStatus.active.value,
            tasks.c.next_run_at < now - timedelta(seconds=grace_seconds),
        )
    ).scalar_one()
    # The tasks' newest fire time (written by every scheduled fire): a bounded read of
    # the tasks table, where the runs table would have to be searched by trigger.
    last_fire = session.execute(sa.select(sa.func.max(tasks.c.last_run_at))).scalar_one_or_none()
    lease = session.execute(
        sa.select(leases.c.holder, leases.c.expires_at).where(leases.c.name == "scheduler")
    ).first()
    return SchedulerHealth(
        overdue=int(overdue),
        last_fire=_aware(last_fire),
        lease_holder=lease.holder if lease else None,
        lease_expires=_aware(lease.expires_at) if lease else None,
    )


def tags_in_use(session: Session, limit: int = 200) -> list[str]:
    """Distinct task tags for the filter list, read from a bounded sample of tasks and
    kept for ``TAGS_SECONDS``."""
    key = ("tags", str(session.get_bind().engine.url))
    found: list[str] | None = _cached(key, TAGS_SECONDS)
    if found is not None:
        return found
    rows = session.execute(sa.select(tasks.c.tags).limit(5000)).scalars()
    seen: set[str] = set()
    for tags in rows:
        seen.update(tags or ())
        if len(seen) >= limit:
            break
    found = sorted(seen)[:limit]
    _keep(key, found)
    return found
