"""The dashboard's reads (schedd/services/dashboard.py) on SQLite and PostgreSQL: the
hour buckets, failing tasks, outcome strips, retry chains and dependency neighbours
come out right on both dialects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from schedd.db import Database
from schedd.models import Task, TaskDependency, TaskRun
from schedd.services import dashboard

NOW = datetime(2026, 12, 6, 15, 30, tzinfo=UTC)
tasks = Task.__table__  # type: ignore[attr-defined]
runs = TaskRun.__table__  # type: ignore[attr-defined]


def _task(conn: sa.Connection, name: str) -> int:
    row = {
        "name": name,
        "description": "",
        "task_type": "shell",
        "executor": "shell",
        "command": "true",
        "arguments": [],
        "timezone": "UTC",
        "priority": "normal",
        "retry_count": 0,
        "retry_delay_seconds": 1.0,
        "status": "active",
        "concurrency_policy": "allow",
        "misfire_policy": "fire_once",
        "tags": [],
        "metadata": {},
        "environment": {},
        "created_at": NOW,
        "updated_at": NOW,
    }
    task_id: int = conn.execute(sa.insert(tasks).values(row).returning(tasks.c.id)).scalar_one()
    return task_id


def _run(conn: sa.Connection, task_id: int, status: str, created: datetime, **extra: Any) -> int:
    row = {
        "task_id": task_id,
        "status": status,
        "created_at": created,
        "started_at": created,
        "completed_at": created + timedelta(seconds=5),
        "trigger": "manual",
        "task_type": "shell",
        "priority": 1,
        "retry_count": 0,
        "claim": 0,
        "cancel_requested": False,
        "output_bytes": 0,
        **extra,
    }
    run_id: int = conn.execute(sa.insert(runs).values(row).returning(runs.c.id)).scalar_one()
    return run_id


def test_hours_failing_tasks_and_strips(db: Database) -> None:
    with db.engine.begin() as conn:
        good, bad = _task(conn, "good"), _task(conn, "bad")
        _run(conn, good, "completed", NOW - timedelta(minutes=10))  # this hour
        _run(conn, good, "completed", NOW - timedelta(hours=1, minutes=50))  # 13:xx
        _run(conn, bad, "failed", NOW - timedelta(hours=1, minutes=40))  # 13:xx
        _run(conn, bad, "timeout", NOW - timedelta(hours=5))  # 10:xx
        _run(conn, bad, "failed", NOW - timedelta(hours=30))  # outside 24 h
        for i in range(25):
            _run(conn, good, "completed", NOW - timedelta(days=3, minutes=i))
    with db.session() as session:
        hours = dashboard.runs_per_hour(session, 24, NOW, cached=False)
        assert len(hours) == 24
        assert hours[-1].start == datetime(2026, 12, 6, 15, tzinfo=UTC)
        assert hours[-1].by_status == {"completed": 1}
        by_hour = {h.start.hour: h.by_status for h in hours if h.by_status}
        assert by_hour == {
            15: {"completed": 1},
            13: {"completed": 1, "failed": 1},
            10: {"timeout": 1},
        }
        failing = dashboard.failing_tasks(session, now=NOW, cached=False)
        assert [(f.name, f.failures) for f in failing] == [("bad", 2)]
        strips = dashboard.recent_outcomes(session, [good, bad])
        assert len(strips[good]) == 20
        assert [o.run_id for o in strips[good]] == sorted(o.run_id for o in strips[good])
        assert [o.status for o in strips[bad]] == ["failed", "timeout", "failed"]
        assert dashboard.recent_outcomes(session, []) == {}
        first = dashboard.task_history(session, good, page=1, size=20)
        second = dashboard.task_history(session, good, page=2, size=20)
        assert (len(first.items), first.more, len(second.items), second.more) == (
            20,
            True,
            7,
            False,
        )
        assert first.items[0].id > first.items[-1].id > second.items[0].id


def test_retry_chain_neighbours_and_timeline(db: Database) -> None:
    with db.engine.begin() as conn:
        a, b, c, d = (_task(conn, n) for n in ("a", "b", "c", "d"))
        deps = TaskDependency.__table__  # type: ignore[attr-defined]
        conn.execute(
            sa.insert(deps),
            [
                {"task_id": b, "depends_on_id": a},
                {"task_id": c, "depends_on_id": b},
                {"task_id": d, "depends_on_id": c},
            ],
        )
        first = _run(conn, b, "failed", NOW - timedelta(minutes=3))
        second = _run(conn, b, "failed", NOW - timedelta(minutes=2), parent_run_id=first)
        third = _run(conn, b, "completed", NOW - timedelta(minutes=1), parent_run_id=second)
    with db.session() as session:
        assert dashboard.retry_chain(session, second) == [first, second, third]
        assert dashboard.retry_chain(session, first) == [first, second, third]
        around = dashboard.neighbours(session, b)
        assert [(x.name, y.name) for x, y in around.upstream] == [("a", "b")]
        assert sorted((x.name, y.name) for x, y in around.downstream) == [("b", "c"), ("c", "d")]
        line = dashboard.timeline(session, 1, NOW)
        assert [r.run_id for r in line] == [third, second, first]
        assert all(r.task_name == "b" for r in line)
        health = dashboard.scheduler_health(session, 60, NOW)
        assert health.ok and health.overdue == 0
