"""Schemathesis (its ``st`` CLI, every check) against a real server with an admin key:
no 5xx, no response outside the schema (status, content type, headers, body), every
valid request accepted and every invalid one refused (so each limit the server
enforces is in the schema), 405 with a correct ``Allow`` for unsupported methods.

Bounded, to stay near 30 s: a fixed seed; on PostgreSQL (whose stricter types and
32-bit columns find what SQLite lets pass) the coverage phase (boundary values of every
documented limit, missing and wrong types, unsupported methods) and a few fuzzed
examples per operation; on SQLite the fuzzed examples only. Look further with
SCHED_SCHEMA_SEED=random, SCHED_SCHEMA_EXAMPLES=50, SCHED_SCHEMA_PHASES=coverage,fuzzing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from schedd.db import Database, create_database, migrate
from schedd.schemas import TaskCreate
from schedd.services import lifecycle, tasks, workers
from tests import services
from tests.apikit import ApiEnv, api_env, task_body

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("SCHED_SCHEMA_EXAMPLES", "5"))
SEED = os.environ.get("SCHED_SCHEMA_SEED", "20261206")


def _seed(db: Database) -> None:
    """Objects for generated requests to find now and then (id 1, name "t")."""
    with db.session() as session:
        task = tasks.create_task(
            session, TaskCreate.model_validate(task_body("t", schedule="*/5 * * * *"))
        )
        lifecycle.trigger_task(session, task.id)
        workers.register(
            session,
            worker_id="w",
            hostname="host",
            ip_address=None,
            task_types=["shell"],
            executor_types=["shell"],
            max_concurrent_tasks=1,
            pid=1,
            version="test",
            stale_after=60,
        )


PHASES = {"sqlite": "fuzzing", "postgresql": "coverage,fuzzing"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.external_service)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def api(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApiEnv]:
    with ExitStack() as stack:
        if backend == "sqlite":
            db = create_database(f"sqlite:///{tmp_path / 'sched.db'}")
            migrate(db)
        else:
            template = request.getfixturevalue("pg_template")
            url = stack.enter_context(services.fresh_pg_database(template=template))
            db = create_database(url, max_connections=5)
        stack.callback(db.dispose)
        _seed(db)
        # Checks that send no or a wrong credential would otherwise soon meet the
        # failed-authentication limit (429 for this address): tested on its own.
        limits = {"auth_failures_per_minute": 1_000_000}
        yield stack.enter_context(api_env(db, tmp_path, api=limits))


def test_api_conforms_to_its_schema(api: ApiEnv, backend: str, tmp_path: Path) -> None:
    base_url = str(api.client.base_url)
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {api.admin_key}",
        "--checks",
        "all",
        "--phases",
        os.environ.get("SCHED_SCHEMA_PHASES", PHASES[backend]),
        "--max-examples",
        str(EXAMPLES),
        # Revoking keys would revoke the admin key the run relies on (auth tests).
        "--exclude-path",
        "/api/apikeys/{key_id}",
        # PostgreSQL refuses NUL in text; the API says so with 422 (test_api_validation).
        "--generation-allow-x00",
        "false",
        "--generation-database",
        "none",
        "--suppress-health-check",
        "all",
        "--workers",
        "1",
        "--no-color",
    ]
    if SEED != "random":
        command += ["--seed", SEED]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-20_000:]
    # It tested every operation but the one left out (none skipped for a schema it
    # could not use).
    selected = re.search(r"Selected: (\d+)/(\d+)", report)
    tested = re.search(r"Tested: (\d+)", report)
    assert selected and tested, report[-3000:]
    assert int(tested.group(1)) == int(selected.group(1)) == int(selected.group(2)) - 1, report
    assert "Unsupported regex" not in report, report[-5000:]
