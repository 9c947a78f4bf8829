"""Bounded JSON bodies, and responses rendered before their transaction commits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from schedd.db import Database
from schedd.models import AuditEntry, Task
from tests.apikit import ApiEnv, api_env, task_body


@pytest.fixture
def api(db: Database, tmp_path: Path) -> Iterator[ApiEnv]:
    with api_env(db, tmp_path) as env:
        yield env


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_deep_metadata_is_422_and_the_task_list_stays_200(api: ApiEnv) -> None:
    response = api.client.post(
        "/api/tasks", json=task_body(metadata=nested(300)), headers=api.admin
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "metadata"
    assert "deeper than 32" in response.json()["message"]
    listed = api.client.get("/api/tasks", headers=api.admin)
    assert listed.status_code == 200
    assert listed.json()["total"] == 0


def test_metadata_at_the_depth_limit_is_accepted(api: ApiEnv) -> None:
    response = api.client.post("/api/tasks", json=task_body(metadata=nested(32)), headers=api.admin)
    assert response.status_code == 201, response.text


def test_a_deep_metadata_patch_is_422_changes_nothing_and_is_audited_as_invalid(
    api: ApiEnv,
) -> None:
    assert api.client.post("/api/tasks", json=task_body("t"), headers=api.admin).status_code == 201
    response = api.client.patch("/api/tasks/t", json={"metadata": nested(300)}, headers=api.admin)
    assert response.status_code == 422
    assert api.client.get("/api/tasks/t", headers=api.admin).json()["metadata"] == {}
    with api.db.session() as session:
        outcomes = session.exec(
            select(AuditEntry.outcome).where(AuditEntry.action == "task.update")
        ).all()
    assert outcomes == ["invalid_input"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (task_body(metadata={"blob": "x" * 70_000}), "metadata"),
        (task_body(arguments=["y" * 40_000, "z" * 40_000]), "arguments"),
        (task_body(tags=["t" * 65]), "tags"),
    ],
)
def test_oversized_fields_are_422_naming_the_field(
    api: ApiEnv, body: dict[str, Any], field: str
) -> None:
    response = api.client.post("/api/tasks", json=body, headers=api.admin)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_a_response_that_cannot_be_rendered_rolls_its_change_back(api: ApiEnv) -> None:
    created = api.client.post("/api/tasks", json=task_body("old"), headers=api.admin)
    assert created.status_code == 201
    # A row an older version let in: metadata deeper than any response can render.
    with api.db.session() as session:
        task = session.exec(select(Task).where(Task.name == "old")).one()
        task.metadata_ = nested(600)
        session.add(task)
    response = api.client.patch(
        "/api/tasks/old", json={"description": "changed"}, headers=api.admin
    )
    assert response.status_code == 500
    assert response.json()["code"] == "internal"
    with api.db.session() as session:
        task = session.exec(select(Task).where(Task.name == "old")).one()
        assert task.description == ""
