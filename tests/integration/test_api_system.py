"""System endpoints: stats, stored system events with their filters and retention,
the audit log, health, and Prometheus metrics."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import col

from schedd.api.app import create_app
from schedd.db import Database, create_database
from schedd.models import RunStatus, SystemLog, TaskRun
from schedd.schemas import TaskCreate
from schedd.services import lifecycle, tasks, workers
from schedd.services.systemlog import SystemLogWriter
from tests.apikit import ApiEnv, RecordingBroker, api_env, serve, settings_for, task_body


@pytest.fixture
def api(db: Database, tmp_path: Path) -> Iterator[ApiEnv]:
    with api_env(db, tmp_path) as env:
        yield env


def _task(db: Database, name: str, **fields: Any) -> int:
    with db.session() as session:
        task = tasks.create_task(session, TaskCreate.model_validate(task_body(name, **fields)))
        return task.id


def _run(db: Database, task_id: int, status: RunStatus | None = None) -> int:
    with db.session() as session:
        run = lifecycle.trigger_task(session, task_id)
        if status is not None:
            session.execute(
                sa.update(TaskRun).where(col(TaskRun.id) == run.id).values(status=status.value)
            )
        return run.id


def _worker(db: Database, worker_id: str) -> None:
    with db.session() as session:
        workers.register(
            session,
            worker_id=worker_id,
            hostname="h",
            ip_address=None,
            task_types=["shell"],
            executor_types=["shell"],
            max_concurrent_tasks=1,
            pid=1,
            version="t",
            stale_after=60,
        )


def test_stats_count_tasks_runs_workers_and_the_queue(api: ApiEnv) -> None:
    first = _task(api.db, "a")
    second = _task(api.db, "b", status="paused")
    _run(api.db, first)
    _run(api.db, first, RunStatus.completed)
    _run(api.db, second, RunStatus.failed)
    _run(api.db, second, RunStatus.cancelled)
    _worker(api.db, "w1")
    stats = api.client.get("/api/system/stats", headers=api.admin).json()
    assert stats["tasks"] == {"active": 1, "paused": 1}
    assert stats["queue_depth"] == 1
    assert stats["workers"] == {"active": 1, "draining": 0, "offline": 0}
    hour = stats["runs_last_hour"]
    assert hour["total"] == 4
    assert {k: v for k, v in hour["by_status"].items() if v} == {
        "pending": 1,
        "completed": 1,
        "failed": 1,
        "cancelled": 1,
    }
    assert hour["success_rate"] == 0.5  # cancelled runs did not try
    assert hour["throughput_per_minute"] == pytest.approx(3 / 60, abs=1e-3)
    assert stats["runs_last_day"]["total"] == 4
    assert stats["version"] and stats["uptime_seconds"] >= 0


@pytest.fixture
def writer(api: ApiEnv) -> Iterator[SystemLogWriter]:
    writer = SystemLogWriter(api.db, flush_interval=3600)
    writer.start()
    yield writer
    writer.stop()


def _logs(api: ApiEnv, query: str) -> list[dict[str, Any]]:
    response = api.client.get(f"/api/system/logs?{query}", headers=api.admin)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_system_events_are_stored_and_filtered(api: ApiEnv, writer: SystemLogWriter) -> None:
    fire = logging.getLogger("schedd.scheduler.fire")
    fire.error("task backup failed", extra={"task_id": 7, "run_id": 70})
    logging.getLogger("schedd.worker").warning("worker w1 went offline", extra={"worker_id": "w1"})
    logging.getLogger("schedd.worker").info("routine chatter is not stored")
    logging.getLogger("elsewhere").error("not one of ours")
    assert writer.flush() == 2

    errors = _logs(api, "level=error")
    assert [(e["level"], e["component"], e["message"]) for e in errors] == [
        ("error", "scheduler", "task backup failed")
    ]
    assert errors[0]["refs"] == {"task_id": 7, "run_id": 70}
    assert [e["component"] for e in _logs(api, "level=WARNING")] == ["worker", "scheduler"]
    assert [e["refs"] for e in _logs(api, "component=worker")] == [{"worker_id": "w1"}]
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    assert _logs(api, f"start_time={later}") == []
    assert len(_logs(api, f"end_time={later}")) == 2
    bad = api.client.get("/api/system/logs?level=loud", headers=api.admin)
    assert bad.status_code == 422 and bad.json()["field"] == "level"


def test_system_events_are_listed_by_time_not_by_when_they_were_stored(
    api: ApiEnv, writer: SystemLogWriter
) -> None:
    """Processes store their events in batches: a later event may get a lower id."""
    now = datetime.now(UTC)
    rows = [
        {"time": now, "message": "stored first, happened last"},
        {"time": now - timedelta(seconds=5), "message": "stored last, happened first"},
    ]
    with api.db.session() as session:
        for row in rows:
            session.execute(
                sa.insert(SystemLog.__table__),  # type: ignore[attr-defined]
                {**row, "level": "info", "levelno": 20, "component": "x", "refs": {}},
            )
    assert [e["message"] for e in _logs(api, "level=info")] == [
        "stored first, happened last",
        "stored last, happened first",
    ]


def test_audit_log_lists_mutations_newest_first_with_filters(api: ApiEnv) -> None:
    api.client.post("/api/tasks", json=task_body("a"), headers=api.admin)
    api.client.post("/api/tasks/a/pause", headers=api.admin)
    entries = api.client.get("/api/audit?target=task:1", headers=api.admin).json()["items"]
    assert [e["action"] for e in entries] == ["task.pause", "task.create"]
    only = api.client.get("/api/audit?action=task.create", headers=api.admin).json()
    assert only["total"] == 1 and only["items"][0]["outcome"] == "ok"


def test_health_reports_database_and_broker(db: Database, tmp_path: Path) -> None:
    broker = RecordingBroker()
    with api_env(db, tmp_path, broker=broker) as env:
        assert env.client.get("/health").json()["status"] == "ok"
        broker.down = True
        response = env.client.get("/health")
        assert response.status_code == 200
        assert response.json() == {
            "status": "degraded",
            "database": "ok",
            "broker": "unavailable",
            "version": response.json()["version"],
            "pending_runs": 0,
            "oldest_pending_seconds": None,
            "isolation": {},  # no worker is active
            "clock_skew_seconds": response.json()["clock_skew_seconds"],
        }
        assert abs(response.json()["clock_skew_seconds"]) < 1  # one host, one clock


def test_health_and_stats_show_the_backlog(api: ApiEnv) -> None:
    task_id = _task(api.db, "a")
    oldest = _run(api.db, task_id)
    _run(api.db, task_id)
    _run(api.db, task_id, RunStatus.running)
    created = datetime.now(UTC) - timedelta(seconds=90)
    with api.db.session() as session:
        session.execute(
            sa.update(TaskRun).where(col(TaskRun.id) == oldest).values(created_at=created)
        )
    health = api.client.get("/health").json()
    assert health["pending_runs"] == 2
    assert 90 <= health["oldest_pending_seconds"] < 150
    stats = api.client.get("/api/system/stats", headers=api.admin).json()
    assert stats["queue_depth"] == 2
    assert 90 <= stats["oldest_pending_seconds"] < 150


def test_health_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    unreachable = create_database(
        "postgresql://nobody@127.0.0.1:1/none", max_connections=1, connection_timeout=1
    )
    app = create_app(settings_for(tmp_path), unreachable)
    with serve(app) as url:
        import httpx

        response = httpx.get(url + "/health", timeout=10)
    unreachable.dispose()
    assert response.status_code == 503
    assert response.json()["database"] == "unavailable"
    assert response.json()["status"] == "unavailable"


# --- metrics ------------------------------------------------------------------

_UNITS = ("seconds", "bytes", "ratio", "info", "total", "celsius", "volts", "meters", "grams")
_BAD_UNITS = re.compile(r"_(milli|micro|nano|kilo|mega)?(sec|ms|us|minutes?|hours?|days?)(_|$)")


def promlint(text: str) -> list[str]:
    """The problems ``promtool check metrics`` reports, for the families named
    scheduler_*: help, counter _total, reserved suffixes, units, snake case."""
    problems = []
    for family in text_string_to_metric_families(text):
        name = family.name
        if not name.startswith("scheduler_"):
            continue
        if not family.documentation.strip():
            problems.append(f"{name}: no help text")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            problems.append(f"{name}: not snake_case")
        if _BAD_UNITS.search(name):
            problems.append(f"{name}: use base units (seconds)")
        if family.type == "counter":
            # The parser adds _total itself: look at the raw sample lines.
            if re.search(rf"^{name}(\{{| )", text, flags=re.M):
                problems.append(f"{name}: counter without _total")
        elif name.endswith("_total"):
            problems.append(f"{name}: non-counter named _total")
        if family.type not in ("histogram", "summary") and name.endswith(
            ("_count", "_sum", "_bucket")
        ):
            problems.append(f"{name}: reserved suffix")
        for sample in family.samples:
            for label in sample.labels:
                if not re.fullmatch(r"[a-z][a-z0-9_]*", label):
                    problems.append(f"{name}: label {label} not snake_case")
    return problems


def test_promlint_finds_what_promtool_would() -> None:
    bad = (
        "# HELP scheduler_runs A counter.\n# TYPE scheduler_runs counter\nscheduler_runs 1\n"
        "# HELP scheduler_lag_ms Lag.\n# TYPE scheduler_lag_ms gauge\nscheduler_lag_ms 1\n"
        "# HELP scheduler_x_total X.\n# TYPE scheduler_x_total gauge\nscheduler_x_total 1\n"
    )
    assert len(promlint(bad)) == 3


def test_metrics_follow_the_conventions_and_cover_the_design(api: ApiEnv) -> None:
    task = _task(api.db, "m")
    _run(api.db, task)
    _run(api.db, task, RunStatus.completed)
    _worker(api.db, "w1")
    api.client.post("/api/workers/w1/heartbeat", json={"current_task_count": 0}, headers=api.admin)
    api.client.get("/api/tasks/1", headers=api.admin)
    api.client.get("/api/tasks/m", headers=api.admin)
    response = api.client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert promlint(text) == []
    names = {f.name for f in text_string_to_metric_families(text)}
    for wanted in (
        "scheduler_runs_active",
        "scheduler_runs_recent",
        "scheduler_run_duration_seconds",
        "scheduler_fire_lag_seconds",
        "scheduler_missed_fires",
        "scheduler_queue_depth",
        "scheduler_workers",
        "scheduler_api_request_duration_seconds",
        "scheduler_heartbeats",
        "scheduler_database_up",
    ):
        assert wanted in names, wanted
    assert 'scheduler_runs_active{executor="shell",status="pending"} 1.0' in text
    assert 'scheduler_runs_recent{executor="shell",status="completed"} 1.0' in text
    assert 'scheduler_queue_depth{task_type="shell"} 1.0' in text
    assert 'scheduler_workers{status="active"} 1.0' in text
    assert 'scheduler_heartbeats_total{source="api"}' in text
    # Latency is labelled by route template, never by the raw path.
    assert 'route="/api/tasks/{ref}"' in text
    assert 'route="/api/tasks/m"' not in text


def test_metrics_can_be_disabled(db: Database, tmp_path: Path) -> None:
    with api_env(db, tmp_path, observability={"metrics_enabled": False}) as env:
        assert env.client.get("/metrics").status_code == 404


def test_cors_allows_the_configured_origins_only(db: Database, tmp_path: Path) -> None:
    origin = "http://localhost:3000"
    with api_env(db, tmp_path, api={"cors_origins": [origin]}) as env:
        preflight = {"Access-Control-Request-Method": "GET", "Origin": origin}
        allowed = env.client.options("/api/tasks", headers=preflight)
        assert allowed.headers.get("access-control-allow-origin") == origin
        other = env.client.options(
            "/api/tasks", headers={**preflight, "Origin": "http://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
