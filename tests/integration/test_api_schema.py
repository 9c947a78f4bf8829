"""Schemathesis over /openapi.json against a real server, with an admin key: no 5xx,
no undocumented status or content type, no response that violates its schema.

Bounded: a few examples per operation, on SQLite and on PostgreSQL (whose stricter
types, NUL bytes in text and 32-bit ids, find what SQLite lets pass).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode, checks

from schedd.api.app import create_app
from schedd.db import Database, create_database, migrate
from schedd.schemas import TaskCreate
from schedd.services import lifecycle, tasks, workers
from tests import services
from tests.apikit import ApiEnv, api_env, settings_for, task_body

EXAMPLES = 10
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


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


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.external_service)],
)
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiEnv]:
    """One server per backend for the whole module: generated requests pile up state,
    which is the point."""
    tmp = tmp_path_factory.mktemp("schema")
    with ExitStack() as stack:
        if request.param == "sqlite":
            db = create_database(f"sqlite:///{tmp / 'sched.db'}")
            migrate(db)
        else:
            template = request.getfixturevalue("pg_template")
            url = stack.enter_context(services.fresh_pg_database(template=template))
            db = create_database(url, max_connections=5)
        stack.callback(db.dispose)
        _seed(db)
        yield stack.enter_context(api_env(db, tmp))


def _operations() -> list[Any]:
    db = create_database("sqlite://")
    document = create_app(settings_for(Path("/nonexistent")), db).openapi()
    db.dispose()
    loaded = schemathesis.openapi.from_dict(document)
    # Revoking keys would revoke the admin key the run relies on: covered by the
    # auth tests instead.
    return [
        op
        for op in (result.ok() for result in loaded.get_all_operations())
        if op.label != "DELETE /api/apikeys/{key_id}"
    ]


OPERATIONS = _operations()


def _has_input(operation: Any) -> bool:
    names = {p.name for p in operation.iter_parameters()} - {"Authorization"}
    return bool(names) or bool(list(operation.body))


# Negative cases only where there is input to get wrong.
CASES = [(op, GenerationMode.POSITIVE) for op in OPERATIONS] + [
    (op, GenerationMode.NEGATIVE) for op in OPERATIONS if _has_input(op)
]


@pytest.mark.parametrize(
    ("operation", "mode"), CASES, ids=[f"{op.label} {mode.value}" for op, mode in CASES]
)
def test_api_conforms_to_its_schema(api: ApiEnv, operation: Any, mode: GenerationMode) -> None:
    base_url = str(api.client.base_url)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=api.admin, checks=CHECKS)

    check()
