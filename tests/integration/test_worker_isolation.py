"""Run isolation through a real worker: environment, identity, cgroups, limits, cost."""

from __future__ import annotations

from pathlib import Path

import pytest

from schedd.db import Database
from schedd.services import output
from tests.workerkit import add_run, make_task, running_worker, wait_for_status


def output_of(db: Database, run_id: int) -> str:
    with db.session() as session:
        return output.read(session, run_id).text


def env_of(db: Database, run_id: int) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output_of(db, run_id).splitlines() if "=" in line)


def test_a_run_gets_its_task_environment_and_none_of_the_worker_secrets(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_SECRET", "j" * 40)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    task = make_task(db, "env", environment={"REPORT_DIR": "/srv/reports"})
    run_id = add_run(db, task)
    with running_worker(db, tmp_path, env_passthrough='["HTTPS_PROXY"]'):
        wait_for_status(db, run_id, "completed", 15)
    env = env_of(db, run_id)
    assert env["REPORT_DIR"] == "/srv/reports"
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    assert env["SCHED_RUN_ID"] == str(run_id)
    assert not {"JWT_SECRET", "AWS_SECRET_ACCESS_KEY", "DATABASE_URL"} & env.keys()
