"""Bad request bodies: 422 naming the field, nothing stored, the failure audited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from schedd.api.app import create_app
from schedd.db import Database
from schedd.models import AuditEntry, Task, TaskDependency
from tests.apikit import ApiEnv, api_env, serve, settings_for, task_body


@pytest.fixture
def api(db: Database, tmp_path: Path) -> Iterator[ApiEnv]:
    with api_env(db, tmp_path) as env:
        yield env


def _snapshot(api: ApiEnv) -> list[tuple[Any, ...]]:
    with api.db.session() as session:
        tasks = [t.model_dump() for t in session.exec(select(Task).order_by(Task.id)).all()]
        deps = session.exec(select(TaskDependency)).all()
        return [tuple(sorted(t.items())) for t in tasks] + [
            (d.task_id, d.depends_on_id) for d in deps
        ]


BAD_CREATES = [
    (task_body(colour="blue"), "colour", "unknown field"),
    (task_body(retry_count="three"), "retry_count", "integer"),
    (task_body(arguments="--all"), "arguments", "list"),
    (task_body(executor="perl"), "executor", ""),
    (task_body(schedule="0 */5 * * * * *"), "schedule", "7 fields"),
    (task_body(schedule="61 * * * * *"), "schedule", "second"),
    (task_body(schedule="@reboot"), "schedule", ""),
    (task_body(timezone="Mars/Olympus"), "timezone", ""),
    (task_body(dependencies=[9999]), "dependencies", "unknown"),
    (task_body(timeout_seconds=0), "timeout_seconds", ""),
    ({"executor": "shell", "command": "x"}, "name", "required"),
    (
        task_body(executor="http", command="http://user:pw@example.com/"),
        "command",
        "user information",
    ),
    (task_body(executor="http", command="https://token@example.com/"), "command", "user"),
]


@pytest.mark.parametrize(
    ("body", "field", "words"), BAD_CREATES, ids=[f for _, f, _ in BAD_CREATES]
)
def test_bad_create_is_422_naming_the_field_and_stores_nothing(
    api: ApiEnv, body: dict[str, Any], field: str, words: str
) -> None:
    before = _snapshot(api)
    response = api.client.post("/api/tasks", json=body, headers=api.admin)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "invalid_input"
    assert error["field"] == field
    assert field in error["message"]
    assert words in error["message"]
    assert _snapshot(api) == before


def test_a_dependency_cycle_is_422_and_changes_nothing(api: ApiEnv) -> None:
    a = api.client.post("/api/tasks", json=task_body("a"), headers=api.admin).json()
    b = api.client.post(
        "/api/tasks", json=task_body("b", dependencies=[a["id"]]), headers=api.admin
    ).json()
    before = _snapshot(api)
    response = api.client.patch(
        f"/api/tasks/{a['id']}", json={"dependencies": [b["id"]]}, headers=api.admin
    )
    assert response.status_code == 422
    assert response.json()["field"] == "dependencies"
    assert "cycle" in response.json()["message"]
    assert _snapshot(api) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"description": "x", "colour": "blue"}, "colour"),
        ({"schedule": "0 0 25 * * *"}, "schedule"),
        ({"priority": "urgent"}, "priority"),
        ({"name": None}, "name"),
    ],
)
def test_bad_update_is_422_and_leaves_the_task_as_it_was(
    api: ApiEnv, body: dict[str, Any], field: str
) -> None:
    api.client.post("/api/tasks", json=task_body("keep"), headers=api.admin)
    before = _snapshot(api)
    response = api.client.patch("/api/tasks/keep", json=body, headers=api.admin)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert _snapshot(api) == before


def test_unknown_field_in_other_bodies_is_422(api: ApiEnv) -> None:
    api.client.post("/api/tasks", json=task_body("t"), headers=api.admin)
    for path, body in [
        ("/api/tasks/t/trigger", {"arguments": [], "when": "now"}),
        ("/api/workers/w/heartbeat", {"current_task_count": 1, "mood": "good"}),
        ("/api/apikeys", {"name": "k", "role": "admin"}),
        ("/api/tokens", {"audience": "x"}),
    ]:
        response = api.client.post(path, json=body, headers=api.admin)
        assert response.status_code == 422, path
        assert response.json()["message"].endswith("unknown field")


def test_malformed_json_is_400(api: ApiEnv) -> None:
    response = api.client.post(
        "/api/tasks",
        content=b'{"name": ',
        headers={**api.admin, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"


def test_page_size_is_bounded(api: ApiEnv) -> None:
    for size in (0, 501):
        response = api.client.get(f"/api/tasks?size={size}", headers=api.admin)
        assert response.status_code == 422
        assert response.json()["field"] == "size"
    page = api.client.get("/api/tasks?size=500", headers=api.admin).json()
    assert set(page) == {"items", "total", "page", "size"}


def test_conflicts_and_missing_objects_use_409_and_404(api: ApiEnv) -> None:
    assert api.client.post("/api/tasks", json=task_body("dup"), headers=api.admin).is_success
    again = api.client.post("/api/tasks", json=task_body("dup"), headers=api.admin)
    assert again.status_code == 409
    assert again.json() == {
        "code": "conflict",
        "message": "a task named 'dup' already exists",
        "field": "name",
    }
    missing = api.client.get("/api/tasks/nope", headers=api.admin)
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


def test_failed_mutations_are_audited_with_their_outcome(api: ApiEnv) -> None:
    api.client.post("/api/tasks", json=task_body(colour="x"), headers=api.admin)
    api.client.delete("/api/tasks/ghost", headers=api.admin)
    with api.db.session() as session:
        entries = session.exec(
            select(AuditEntry).where(AuditEntry.action.startswith("task.")).order_by(AuditEntry.id)
        ).all()
    assert [(e.action, e.target, e.outcome) for e in entries] == [
        ("task.create", "-", "invalid_input"),
        ("task.delete", "task:ghost", "not_found"),
    ]
    assert all(e.actor.endswith(":admin") for e in entries)


def test_an_unexpected_error_is_a_bare_500_with_the_traceback_only_in_the_log(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(tmp_path)
    app = create_app(settings, db)

    def boom() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/boom", boom)
    with serve(app) as url:
        response = httpx.get(url + "/boom")
    assert response.status_code == 500
    assert response.json() == {"code": "internal", "message": "internal error", "field": None}
    assert "secret internals" not in response.text
    assert "Traceback" in caplog.text and "secret internals" in caplog.text


def test_an_update_that_puts_credentials_in_an_http_url_is_422(api: ApiEnv) -> None:
    body = task_body("probe", executor="http", command="http://example.com/")
    created = api.client.post("/api/tasks", json=body, headers=api.admin)
    assert created.status_code == 201, created.text
    before = _snapshot(api)
    response = api.client.patch(
        "/api/tasks/probe", json={"command": "http://a:b@example.com/"}, headers=api.admin
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "command"
    assert _snapshot(api) == before


def test_an_output_offset_past_any_output_is_read_not_a_database_error(api: ApiEnv) -> None:
    """Offsets are stored as 32-bit integers: PostgreSQL refused a larger one (found by
    schemathesis); the largest the API takes reads nothing, one more is 422."""
    task = api.client.post("/api/tasks", json=task_body("out"), headers=api.admin).json()
    run = api.client.post(f"/api/tasks/{task['id']}/trigger", headers=api.admin).json()
    path = f"/api/runs/{run['id']}/output"
    response = api.client.get(f"{path}?offset={2**31 - 1}", headers=api.admin)
    assert response.status_code == 200, response.text
    assert response.json()["data"] == ""
    response = api.client.get(f"{path}?offset={2**31}", headers=api.admin)
    assert response.status_code == 422 and response.json()["field"] == "offset"


def test_numbers_are_json_numbers(api: ApiEnv) -> None:
    """true and "3" are not numbers (Pydantic would take them as 1 and 3); 3.0 is an
    integer, as JSON Schema has it."""
    for field, value in [("retry_count", True), ("retry_count", "3"), ("cpu_max", False)]:
        response = api.client.post(
            "/api/tasks", json=task_body(**{field: value}), headers=api.admin
        )
        assert response.status_code == 422, (field, value)
        assert response.json()["field"] == field
    response = api.client.post("/api/tasks", json=task_body(retry_count=3.0), headers=api.admin)
    assert response.status_code == 201 and response.json()["retry_count"] == 3


@pytest.mark.parametrize("query", ["since=1700000000", "since=0.5", "since=true"])
def test_a_number_is_not_a_date_time(api: ApiEnv, query: str) -> None:
    response = api.client.get(f"/api/runs?{query}", headers=api.admin)
    assert response.status_code == 422 and response.json()["field"] == "since"
    iso = api.client.get("/api/runs?since=2026-01-01T00:00:00Z", headers=api.admin)
    assert iso.status_code == 200
