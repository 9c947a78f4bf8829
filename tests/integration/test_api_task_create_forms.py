"""POST /api/tasks as a newcomer writes it: executor left out, a task from GET posted
back as a copy, the seed's python command, and the warning for a script that is not
there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from schedd.db import create_database
from tests.apikit import ApiEnv, api_env, task_body
from tests.schedctlkit import migrated_sqlite


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiEnv]:
    """On SQLite only: nothing here depends on the backend (the task service's rules run
    on both in test_task_service), and CI time is short."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    db = create_database(migrated_sqlite(tmp_path / "sched.db"))
    try:
        with api_env(db, tmp_path, worker={"working_directory": str(jobs)}) as env:
            yield env
    finally:
        db.dispose()


def test_executor_defaults_to_shell(api: ApiEnv) -> None:
    response = api.client.post(
        "/api/tasks", json={"name": "hi", "command": "echo hi"}, headers=api.admin
    )
    assert response.status_code == 201, response.text
    task = response.json()
    assert (task["executor"], task["task_type"], task["warnings"]) == ("shell", "shell", [])


def test_a_task_from_get_posts_back_as_a_copy(api: ApiEnv) -> None:
    body = task_body("original", schedule="0 0 2 * * *", tags=["daily"], retry_count=2)
    original = api.client.post("/api/tasks", json=body, headers=api.admin).json()
    shown = api.client.get(f"/api/tasks/{original['id']}", headers=api.admin).json()
    assert shown["next_run_at"] is not None
    response = api.client.post("/api/tasks", json={**shown, "name": "copy"}, headers=api.admin)
    assert response.status_code == 201, response.text
    copy = response.json()
    assert copy["id"] != original["id"]
    assert copy["created_at"] != "2000-01-01T00:00:00Z"
    volatile = {"id", "name", "created_at", "updated_at", "next_run_at", "warnings"}
    assert {k: v for k, v in copy.items() if k not in volatile} == {
        k: v for k, v in shown.items() if k not in volatile
    }
    # The values of the read-only fields are ignored, whatever they are.
    junk = {**shown, "name": "copy2", "id": "x", "created_at": 5, "last_run_at": "never"}
    assert api.client.post("/api/tasks", json=junk, headers=api.admin).status_code == 201


def test_unknown_fields_are_still_refused(api: ApiEnv) -> None:
    response = api.client.post("/api/tasks", json=task_body("x", run_count=3), headers=api.admin)
    assert response.status_code == 422
    assert response.json()["field"] == "run_count"
    assert response.json()["message"] == "run_count: unknown field"


def test_the_seed_s_python_command_is_accepted_and_a_missing_script_warned(
    api: ApiEnv,
) -> None:
    body = task_body("seed", executor="python", command="python process_data.py")
    response = api.client.post("/api/tasks", json=body, headers=api.admin)
    assert response.status_code == 201, response.text
    jobs = api.settings.worker.working_directory
    assert response.json()["warnings"] == [
        f"python script process_data.py does not exist in {jobs}: "
        "runs of this task will fail until it is there"
    ]
    assert Path(str(jobs), "ok.py").write_text("") == 0
    body = task_body("ok", executor="python", command="python3 ok.py --input data.csv")
    assert api.client.post("/api/tasks", json=body, headers=api.admin).json()["warnings"] == []


@pytest.mark.parametrize(
    ("command", "words"),
    [("python 'a.py", "No closing quotation"), ("python3", "no script")],
)
def test_a_python_command_without_argv_is_422(api: ApiEnv, command: str, words: str) -> None:
    body = task_body("bad", executor="python", command=command)
    response = api.client.post("/api/tasks", json=body, headers=api.admin)
    assert response.status_code == 422
    assert response.json()["field"] == "command"
    assert words in response.json()["message"]
    assert api.client.get("/api/tasks/bad", headers=api.admin).status_code == 404
