"""Function tasks through the API: the target and JSON arguments are checked at the door.

A function task's command is imported by the worker, so a malformed one is refused
with 422 naming the field, on create, update and trigger, and nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from schedd.db import Database
from schedd.models import Task, TaskRun
from tests.apikit import ApiEnv, api_env, task_body


@pytest.fixture
def api(db: Database, tmp_path: Path) -> Iterator[ApiEnv]:
    with api_env(db, tmp_path) as env:
        yield env


def function_body(name: str = "call", **fields: Any) -> dict[str, Any]:
    return task_body(name, **{"executor": "function", "command": "reports.daily:build", **fields})


def snapshot(api: ApiEnv) -> list[Any]:
    with api.db.session() as session:
        tasks = [t.model_dump() for t in session.exec(select(Task).order_by(Task.id)).all()]
        runs = [r.id for r in session.exec(select(TaskRun)).all()]
    return [tasks, runs]


def test_a_function_task_is_created_routed_by_its_executor_name(api: ApiEnv) -> None:
    body = function_body(arguments=["42", '"text"', '{"k": [1]}'])
    response = api.client.post("/api/tasks", json=body, headers=api.admin)
    assert response.status_code == 201, response.text
    task = response.json()
    assert (task["executor"], task["task_type"]) == ("function", "function")
    assert task["command"] == "reports.daily:build"
    assert task["arguments"] == ["42", '"text"', '{"k": [1]}']


BAD_TARGETS = [
    ("reports.daily.build", "exactly one ':'"),
    ("reports:daily:build", "exactly one ':'"),
    (":build", "the module path is empty"),
    ("reports.daily:", "the function name is empty"),
    (".daily:build", "an empty name in the module path"),
    ("reports.daily:build; rm -rf /", "is not a Python identifier"),
    ("reports.daily:build ", "is not a Python identifier"),
    ("reports-x:build", "is not a Python identifier"),
    ("reports.import:build", "is a Python keyword"),
    ("os:__class__", "names starting with '__' are not allowed"),
    ("__main__:run", "names starting with '__' are not allowed"),
    ("r\u00e9ports:build", "is not a Python identifier"),
    ("a" * 501 + ":b", "at most 500 characters"),
]


@pytest.mark.parametrize(("command", "words"), BAD_TARGETS)
def test_a_malformed_target_is_422_naming_the_command_and_stores_nothing(
    api: ApiEnv, command: str, words: str
) -> None:
    before = snapshot(api)
    response = api.client.post("/api/tasks", json=function_body(command=command), headers=api.admin)
    assert response.status_code == 422, response.text
    error = response.json()
    assert (error["code"], error["field"]) == ("invalid_input", "command")
    assert words in error["message"]
    assert snapshot(api) == before


def test_an_argument_that_is_not_json_is_422_naming_it(api: ApiEnv) -> None:
    response = api.client.post(
        "/api/tasks", json=function_body(arguments=["1", "not json"]), headers=api.admin
    )
    assert response.status_code == 422
    error = response.json()
    assert error["field"] == "arguments"
    assert error["message"].startswith("arguments[1] is not JSON")


def test_other_executors_keep_their_free_form_commands_and_arguments(api: ApiEnv) -> None:
    body = task_body(command="echo a:b:c", arguments=["not json"])
    assert api.client.post("/api/tasks", json=body, headers=api.admin).status_code == 201


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"command": "no colon"}, "command"),
        ({"arguments": ["{"]}, "arguments"),
    ],
)
def test_an_update_that_would_make_the_call_malformed_is_422(
    api: ApiEnv, change: dict[str, Any], field: str
) -> None:
    api.client.post("/api/tasks", json=function_body(), headers=api.admin)
    before = snapshot(api)
    response = api.client.patch("/api/tasks/call", json=change, headers=api.admin)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert snapshot(api) == before


def test_switching_a_task_to_the_function_executor_checks_its_command(api: ApiEnv) -> None:
    api.client.post("/api/tasks", json=task_body("shelly"), headers=api.admin)
    bad = api.client.patch("/api/tasks/shelly", json={"executor": "function"}, headers=api.admin)
    assert bad.status_code == 422
    assert bad.json()["field"] == "command"
    good = api.client.patch(
        "/api/tasks/shelly",
        json={"executor": "function", "command": "pkg.mod:f"},
        headers=api.admin,
    )
    assert good.status_code == 200, good.text
    assert good.json()["task_type"] == "function"


def test_a_trigger_with_arguments_that_are_not_json_is_422_and_creates_no_run(
    api: ApiEnv,
) -> None:
    api.client.post("/api/tasks", json=function_body(), headers=api.admin)
    before = snapshot(api)
    response = api.client.post(
        "/api/tasks/call/trigger", json={"arguments": ["oops"]}, headers=api.admin
    )
    assert response.status_code == 422
    assert response.json()["field"] == "arguments"
    assert snapshot(api) == before
    ok = api.client.post("/api/tasks/call/trigger", json={"arguments": ["7"]}, headers=api.admin)
    assert ok.status_code in (200, 201, 202), ok.text
