"""What API calls set in motion: the scheduler is woken, created runs reach the
broker, runs are cancelled and re-run, output is read from an offset, workers are
drained and removed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import col

from schedd.db import Database
from schedd.models import RunStatus, TaskRun
from schedd.services import output, workers
from schedd.services.output import Chunk, OutputBatch
from tests.apikit import ApiEnv, RecordingBroker, api_env, task_body


@pytest.fixture
def broker() -> RecordingBroker:
    return RecordingBroker()


@pytest.fixture
def api(db: Database, tmp_path: Path, broker: RecordingBroker) -> Iterator[ApiEnv]:
    with api_env(db, tmp_path, broker=broker) as env:
        yield env


def _create(api: ApiEnv, name: str = "job", **fields: object) -> dict[str, object]:
    response = api.client.post("/api/tasks", json=task_body(name, **fields), headers=api.admin)
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/api/tasks/job", {"schedule": "0 0 * * * *"}),
        ("POST", "/api/tasks/job/pause", None),
        ("POST", "/api/tasks/job/resume", None),
        ("DELETE", "/api/tasks/job", None),
    ],
)
def test_task_changes_wake_the_scheduler(
    api: ApiEnv, method: str, path: str, body: dict[str, object] | None
) -> None:
    _create(api, schedule="0 * * * * *")
    assert api.tasks_changed.is_set()
    api.tasks_changed.clear()
    response = api.client.request(method, path, json=body, headers=api.admin)
    assert response.is_success, response.text
    assert api.tasks_changed.is_set()


def test_a_failed_change_does_not_wake_the_scheduler(api: ApiEnv) -> None:
    api.client.post("/api/tasks", json=task_body(schedule="bad"), headers=api.admin)
    assert not api.tasks_changed.is_set()


def test_trigger_publishes_the_run_after_commit(api: ApiEnv, broker: RecordingBroker) -> None:
    _create(api)
    run = api.client.post(
        "/api/tasks/job/trigger", json={"arguments": ["--fast"]}, headers=api.admin
    ).json()
    assert run["arguments"] == ["--fast"]
    assert [m.run_id for m in broker.published] == [run["id"]]
    assert broker.published[0].task_type == "shell"


def test_trigger_with_the_broker_down_still_creates_the_run(
    api: ApiEnv, broker: RecordingBroker
) -> None:
    _create(api)
    broker.down = True
    response = api.client.post("/api/tasks/job/trigger", headers=api.admin)
    assert response.status_code == 202
    runs = api.client.get("/api/runs?status=pending", headers=api.admin).json()
    assert [r["id"] for r in runs["items"]] == [response.json()["id"]]


def _set_status(db: Database, run_id: int, status: RunStatus) -> None:
    with db.session() as session:
        session.execute(
            sa.update(TaskRun).where(col(TaskRun.id) == run_id).values(status=status.value)
        )


def test_cancel_and_retry(api: ApiEnv, broker: RecordingBroker) -> None:
    _create(api)
    run = api.client.post("/api/tasks/job/trigger", headers=api.admin).json()
    retry_early = api.client.post(f"/api/runs/{run['id']}/retry", headers=api.admin)
    assert retry_early.status_code == 409
    cancelled = api.client.post(f"/api/runs/{run['id']}/cancel", headers=api.admin).json()
    assert cancelled["status"] == "cancelled"
    assert api.client.post(f"/api/runs/{run['id']}/cancel", headers=api.admin).status_code == 409
    again = api.client.post(f"/api/runs/{run['id']}/retry", headers=api.admin)
    assert again.status_code == 202
    assert again.json()["status"] == "pending"
    assert [m.run_id for m in broker.published] == [run["id"], again.json()["id"]]
    listed = api.client.get("/api/tasks/job/runs", headers=api.admin).json()
    assert [r["id"] for r in listed["items"]] == [again.json()["id"], run["id"]]
    assert api.client.get("/api/runs/999999", headers=api.admin).status_code == 404


def test_output_is_read_from_an_offset_until_finished(api: ApiEnv) -> None:
    _create(api)
    run_id = api.client.post("/api/tasks/job/trigger", headers=api.admin).json()["id"]
    with api.db.session() as session:
        output.store(
            session,
            run_id,
            OutputBatch([Chunk(0, 0, "hello\n"), Chunk(1, 6, "world\n")], None, 12),
        )
    first = api.client.get(f"/api/runs/{run_id}/output", headers=api.admin).json()
    assert first == {"data": "hello\nworld\n", "offset": 0, "next_offset": 12, "finished": False}
    _set_status(api.db, run_id, RunStatus.completed)
    rest = api.client.get(f"/api/runs/{run_id}/output?offset=6", headers=api.admin).json()
    assert rest == {"data": "world\n", "offset": 6, "next_offset": 12, "finished": True}


def test_next_fire_times(api: ApiEnv) -> None:
    _create(api, schedule="0 0 9 * * *", timezone="Europe/Berlin")
    times = api.client.get("/api/tasks/job/next?count=3", headers=api.admin).json()["times"]
    assert len(times) == 3
    assert all(t.endswith(("T08:00:00Z", "T07:00:00Z")) for t in times)
    assert api.client.get("/api/tasks/job/next?count=0", headers=api.admin).status_code == 422


def test_workers_heartbeat_drain_and_remove(api: ApiEnv) -> None:
    unknown = api.client.post("/api/workers/ghost/heartbeat", json={}, headers=api.admin)
    assert unknown.status_code == 404
    with api.db.session() as session:
        workers.register(
            session,
            worker_id="w1",
            hostname="h",
            ip_address=None,
            task_types=["shell"],
            executor_types=["shell"],
            max_concurrent_tasks=2,
            pid=1,
            version="t",
            stale_after=60,
        )
    beat = api.client.post(
        "/api/workers/w1/heartbeat", json={"cpu_usage": 12.5}, headers=api.admin
    ).json()
    assert beat["cpu_usage"] == 12.5 and beat["status"] == "active"
    assert api.client.delete("/api/workers/w1", headers=api.admin).status_code == 409
    drained = api.client.post("/api/workers/w1/drain", headers=api.admin).json()
    assert drained["status"] == "draining"
    with api.db.session() as session:
        workers.deregister(session, "w1")
    assert api.client.delete("/api/workers/w1", headers=api.admin).status_code == 204
    assert api.client.get("/api/workers/w1", headers=api.admin).status_code == 404
