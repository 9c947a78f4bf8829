"""Scheduler throughput: fires per second and fire lag with 10,000 tasks.

Fire lag is ``created_at - scheduled_for`` of each run: how late the fire pass that
wrote the run began (``created_at`` is the database's clock read once per pass, so all
batches of a pass carry the same one). Visible lag is when the batch that wrote the run
had committed (this process's clock, taken as each batch returns) minus its scheduled
time: when a worker could first see the run. In a burst the two differ by the time
the pass takes to write every batch. Two scenarios, on SQLite and on PostgreSQL, with
the real scheduler and the database broker (the embedded default), no workers:

- burst: all N tasks are due at the same second; one scheduler fires them all (in
  batches of ``batch_size``). fires/s = N / (time from that second to the last run).
  This is the worst case: the visible lag of the last batch is the time to fire
  everything.
- steady (sustained): ``rate * period`` tasks each firing every ``period`` seconds,
  spread evenly over the seconds (``"3/10 * * * * *"`` ...), so ``rate`` fires are due
  every second, for ``duration`` seconds, run by the SchedulerRole thread exactly as
  `schedd run` does.

A scheduler that falls behind is reported, not failed: ``missing`` counts the fire
times of the window that had no run when the measurement ended (they count in no lag
figure, so look at both).

    python -m bench.scheduler_fires [--tasks 10000] [--rate 1000] [--backend both]
        [--scenario both] [--duration 20] [--period 10] [--batch-size 500]
        [--pg-admin-url URL]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bench import common
from bench.common import percentile, scratch_database, table, url_of, write_result
from schedd import cron
from schedd.brokers.database import DatabaseBroker
from schedd.config import Settings
from schedd.daemon import Context
from schedd.db import Database, describe_url
from schedd.models import Task, TaskRun
from schedd.scheduler.passes import Scheduler
from schedd.scheduler.role import SchedulerRole
from schedd.types import utcnow


def settings_for(db: Database, batch_size: int) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": url_of(db)},
            "scheduler": {"batch_size": batch_size, "scheduling_interval": 1.0},
        }
    )


def insert_tasks(db: Database, schedules: list[str], first: list[datetime]) -> None:
    now = utcnow()
    rows = [
        {
            "name": f"bench-{i}",
            "description": "",
            "task_type": "shell",
            "executor": "shell",
            "command": "true",
            "arguments": [],
            "schedule": schedule,
            "timezone": "UTC",
            "priority": "normal",
            "retry_count": 0,
            "retry_delay_seconds": 10.0,
            "status": "active",
            "concurrency_policy": "allow",
            "misfire_policy": "fire_once",
            "tags": [],
            "metadata_": {},
            "created_at": now,
            "updated_at": now,
            "next_run_at": next_run_at,
        }
        for i, (schedule, next_run_at) in enumerate(zip(schedules, first, strict=True))
    ]
    with db.session() as session:
        for start in range(0, len(rows), 2000):
            session.execute(sa.insert(Task), rows[start : start + 2000])


@contextmanager
def commit_times() -> Iterator[dict[int, datetime]]:
    """Run id -> when the fire batch that inserted it had committed (the scheduler's
    batches return after their commit), for the schedulers of this process."""
    seen: dict[int, datetime] = {}
    original = Scheduler._fire_batch

    def timed(self: Scheduler, now: datetime | None, in_database: bool) -> Any:
        result = original(self, now, in_database)
        at = utcnow()
        for run in result.runs:
            seen[run.id] = at
        return result

    Scheduler._fire_batch = timed  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        Scheduler._fire_batch = original  # type: ignore[method-assign]


def lags(
    db: Database, start: datetime, end: datetime, committed: dict[int, datetime]
) -> tuple[list[float], list[float]]:
    """Fire lags and visible lags of the runs scheduled in [start, end)."""
    with db.session() as session:
        rows = session.execute(
            sa.select(TaskRun.id, TaskRun.scheduled_for, TaskRun.created_at).where(  # type: ignore[call-overload]
                TaskRun.scheduled_for >= start,  # type: ignore[operator]
                TaskRun.scheduled_for < end,  # type: ignore[operator]
            )
        ).all()
    fire = [(created - scheduled).total_seconds() for _, scheduled, created in rows]
    visible = [
        (committed[run_id] - scheduled).total_seconds()
        for run_id, scheduled, _ in rows
        if run_id in committed
    ]
    return fire, visible


def sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - utcnow()).total_seconds()))


def burst(db: Database, tasks: int, batch_size: int) -> dict[str, Any]:
    due = (utcnow() + timedelta(seconds=3)).replace(microsecond=0)
    insert_tasks(db, ["0 0 0 1 1 *"] * tasks, [due] * tasks)  # yearly: fires once here
    settings = settings_for(db, batch_size)
    broker = DatabaseBroker(settings, db)
    scheduler = Scheduler(db, broker, settings)
    try:
        with commit_times() as committed:
            sleep_until(due)
            fired = 0
            while fired < tasks:
                fired += scheduler.run_pass().fired
            elapsed = (utcnow() - due).total_seconds()
    finally:
        broker.close()
    found, visible = lags(db, due, due + timedelta(seconds=1), committed)
    return result("burst", tasks, tasks, found, elapsed, visible=visible)


def steady(db: Database, rate: int, batch_size: int, duration: int, period: int) -> dict[str, Any]:
    tasks = rate * period
    start = (utcnow() + timedelta(seconds=3)).replace(microsecond=0)
    schedules = [f"{i % period}/{period} * * * * *" for i in range(tasks)]
    just_before = start - timedelta(microseconds=1)
    first = [cron.parse(s).next_after(just_before) for s in schedules]
    end = start + timedelta(seconds=duration)
    # Fire times in [start, end) of every task: what a perfect scheduler creates.
    expected = sum(
        len(cron.parse(s).between(just_before, end - timedelta(seconds=1))) for s in schedules
    )
    insert_tasks(db, schedules, first)
    settings = settings_for(db, batch_size)
    broker = DatabaseBroker(settings, db)
    with commit_times() as committed:
        role = SchedulerRole(Context(settings=settings, db=db, broker=broker))
        role.start()
        try:
            sleep_until(start + timedelta(seconds=duration + 2))
        finally:
            role.stop(graceful=True)
            role.join(30)
            broker.close()
    found, visible = lags(db, start, end, committed)
    return result("steady", tasks, expected, found, float(duration), rate=rate, visible=visible)


def result(
    scenario: str,
    tasks: int,
    expected: int,
    found: list[float],
    seconds: float,
    *,
    rate: int | None = None,
    visible: list[float] | None = None,
) -> dict[str, Any]:
    visible = visible or []
    return {
        "scenario": scenario,
        "tasks": tasks,
        "due_per_second": rate if rate is not None else tasks,
        "runs": len(found),
        "missing": expected - len(found),
        "seconds": round(seconds, 3),
        "fires_per_second": round(len(found) / seconds, 1) if seconds > 0 else None,
        "lag_p50_ms": round(percentile(found, 50) * 1000, 1),
        "lag_p99_ms": round(percentile(found, 99) * 1000, 1),
        "lag_max_ms": round(max(found) * 1000, 1) if found else None,
        "visible_p50_ms": round(percentile(visible, 50) * 1000, 1),
        "visible_p99_ms": round(percentile(visible, 99) * 1000, 1),
        "visible_max_ms": round(max(visible) * 1000, 1) if visible else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="burst: tasks (default 10000)")
    parser.add_argument(
        "--rate", type=int, default=None, help="steady: fires due per second (default tasks/period)"
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--scenario", choices=["burst", "steady", "both"], default="both")
    parser.add_argument("--duration", type=int, default=20, help="steady seconds (default 20)")
    parser.add_argument("--period", type=int, default=10, help="steady: each task fires every N s")
    parser.add_argument("--batch-size", type=int, default=500, help="scheduler.batch_size")
    parser.add_argument(
        "--pg-admin-url",
        default=common.PG_ADMIN_URL,
        help="PostgreSQL URL used to create and drop a scratch database "
        "(default $SCHED_BENCH_PG_URL or postgres@127.0.0.1)",
    )
    args = parser.parse_args()
    common.PG_ADMIN_URL = args.pg_admin_url
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    rate = args.rate if args.rate is not None else max(1, args.tasks // args.period)
    results: list[dict[str, Any]] = []
    for backend in backends:
        if args.scenario in ("burst", "both"):
            with scratch_database(backend) as db:
                results.append({"backend": backend, **burst(db, args.tasks, args.batch_size)})
        if args.scenario in ("steady", "both"):
            with scratch_database(backend) as db:
                measured = steady(db, rate, args.batch_size, args.duration, args.period)
                results.append({"backend": backend, **measured})
    columns = [
        "backend",
        "scenario",
        "tasks",
        "due_per_second",
        "runs",
        "missing",
        "seconds",
        "fires_per_second",
        "lag_p50_ms",
        "lag_p99_ms",
        "lag_max_ms",
        "visible_p50_ms",
        "visible_p99_ms",
    ]
    print(table(columns, [[r[c] for c in columns] for r in results]))
    arguments = {**vars(args), "pg_admin_url": describe_url(args.pg_admin_url)}
    path = write_result("scheduler_fires", {"arguments": arguments, "results": results})
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
