"""Every route against every scope, generated from the app's routes.

A new route fails here until it declares a scope (or is added to OPEN on purpose) and
has an entry in EXPECTED: nothing can be left unguarded by accident.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlmodel import col

from schedd.api.app import api_routes, create_app
from schedd.api.deps import RequireScope
from schedd.db import Database, create_database, migrate
from schedd.models import RunStatus, TaskRun
from schedd.schemas import SCOPES, TaskCreate
from schedd.services import auth, lifecycle, tasks, workers
from tests.apikit import ApiEnv, api_env, settings_for, task_body

# The API's own documentation pages and their packaged assets are public, like the
# OpenAPI schema they render.
OPEN = {
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/docs/assets/{name}"),
}
ANY = "any"  # authenticated, no particular scope

# The contract: which scope each route needs. Changing a route's scope means
# changing this table too.
EXPECTED: dict[tuple[str, str], str] = {
    ("POST", "/api/tasks"): "task.write",
    ("GET", "/api/tasks"): "task.read",
    ("GET", "/api/tasks/{ref}"): "task.read",
    ("PATCH", "/api/tasks/{ref}"): "task.write",
    ("DELETE", "/api/tasks/{ref}"): "task.delete",
    ("POST", "/api/tasks/{ref}/trigger"): "task.execute",
    ("POST", "/api/tasks/{ref}/pause"): "task.execute",
    ("POST", "/api/tasks/{ref}/resume"): "task.execute",
    ("GET", "/api/tasks/{ref}/runs"): "task.read",
    ("GET", "/api/tasks/{ref}/next"): "task.read",
    ("GET", "/api/runs"): "task.read",
    ("GET", "/api/runs/{run_id}"): "task.read",
    ("GET", "/api/runs/{run_id}/output"): "task.read",
    ("POST", "/api/runs/{run_id}/cancel"): "task.execute",
    ("POST", "/api/runs/{run_id}/retry"): "task.execute",
    ("GET", "/api/workers"): "worker.read",
    ("GET", "/api/workers/{worker_id}"): "worker.read",
    ("POST", "/api/workers/{worker_id}/heartbeat"): "worker.write",
    ("POST", "/api/workers/{worker_id}/drain"): "worker.write",
    ("DELETE", "/api/workers/{worker_id}"): "worker.write",
    ("GET", "/api/system/stats"): "system.read",
    ("GET", "/api/system/logs"): "system.read",
    ("GET", "/api/audit"): "system.read",
    ("POST", "/api/apikeys"): "system.write",
    ("GET", "/api/apikeys"): "system.read",
    ("DELETE", "/api/apikeys/{key_id}"): "system.write",
    ("GET", "/api/notify/channels"): "system.read",
    ("POST", "/api/notify/channels/{name}/test"): "system.write",
    ("GET", "/api/notify/deliveries"): "system.read",
    ("POST", "/api/tokens"): ANY,
    ("GET", "/api/whoami"): ANY,
}

BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/tasks"): lambda: task_body(f"new-{uuid.uuid4().hex[:8]}"),
    ("PATCH", "/api/tasks/{ref}"): lambda: {"description": "changed"},
    ("POST", "/api/workers/{worker_id}/heartbeat"): lambda: {
        "current_task_count": 2,
        "load_average": 0.5,
        "memory_usage": 512,
        "cpu_usage": 25.0,
    },
    ("POST", "/api/apikeys"): lambda: {"name": "made-in-test", "scopes": []},
    ("POST", "/api/tokens"): lambda: {},
}


def _guards(dependant: Dependant) -> Iterator[RequireScope]:
    for sub in dependant.dependencies:
        if isinstance(sub.call, RequireScope):
            yield sub.call
        yield from _guards(sub)


def scope_of(route: APIRoute) -> str | None:
    """The scope a route requires (ANY: authentication only), None when unguarded."""
    guards = list(_guards(route.dependant))
    if not guards:
        return None
    assert len(guards) == 1, f"{route.path}: several scope guards {guards}"
    return guards[0].scope or ANY


def _routes() -> list[tuple[str, str, str | None]]:
    db = create_database("sqlite://")
    app = create_app(settings_for(Path("/nonexistent")), db)
    table = [
        (method, route.path, scope_of(route))
        for route in api_routes(app)
        for method in sorted(route.methods)
        # The dashboard's routes are guarded by its session cookie, checked by
        # tests/integration/test_ui_http.py::test_every_dashboard_route_needs_a_session.
        if not route.path.startswith("/ui")
    ]
    db.dispose()
    return table


ROUTES = _routes()
GUARDED = [(m, p, s) for m, p, s in ROUTES if (m, p) not in OPEN]


def test_every_route_is_guarded_or_explicitly_open() -> None:
    unguarded = [(m, p) for m, p, s in ROUTES if s is None and (m, p) not in OPEN]
    assert unguarded == []
    guarded_open = [(m, p) for m, p, s in ROUTES if s is not None and (m, p) in OPEN]
    assert guarded_open == []


def test_route_scopes_match_the_contract() -> None:
    assert {(m, p): s for m, p, s in GUARDED} == EXPECTED


@dataclass
class Objects:
    """Fresh objects for one route check, so every check starts from a known state."""

    task_id: int
    pending_run: int
    ended_run: int
    active_worker: str
    offline_worker: str
    key_id: int


@pytest.fixture(scope="module")
def module_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    path = tmp_path_factory.mktemp("scopes") / "sched.db"
    db = create_database(f"sqlite:///{path}")
    migrate(db)
    yield db
    db.dispose()


@pytest.fixture(scope="module")
def api(module_db: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiEnv]:
    # A channel whose test message is always delivered: a command that exits 0.
    notify = {"channels": {"check": {"type": "command", "command": ["true"]}}}
    # Every route is called with a wrong key on purpose: more than the failed-auth
    # limit allows a client in a minute (that limit has its own tests).
    api = {"auth_failures_per_minute": 1_000_000}
    with api_env(module_db, tmp_path_factory.mktemp("api"), notify=notify, api=api) as env:
        yield env


@pytest.fixture(scope="module")
def scope_keys(api: ApiEnv) -> dict[str, str]:
    return {scope: api.key(scope, name=f"only-{scope}") for scope in SCOPES}


def _register(db: Database, worker_id: str) -> None:
    with db.session() as session:
        workers.register(
            session,
            worker_id=worker_id,
            hostname="host",
            ip_address="127.0.0.1",
            task_types=["shell"],
            executor_types=["shell"],
            max_concurrent_tasks=2,
            pid=1,
            version="test",
            stale_after=60,
        )


@pytest.fixture
def objects(api: ApiEnv) -> Objects:
    tag = uuid.uuid4().hex[:8]
    with api.db.session() as session:
        body = TaskCreate.model_validate(task_body(f"task-{tag}", schedule="0 * * * * *"))
        task = tasks.create_task(session, body)
        pending = lifecycle.trigger_task(session, task.id)
        ended = lifecycle.trigger_task(session, task.id)
        session.execute(
            sa.update(TaskRun)
            .where(col(TaskRun.id) == ended.id)
            .values(status=RunStatus.completed.value)
        )
        key = auth.create_api_key(session, f"victim-{tag}", [], creator=None)
    _register(api.db, f"active-{tag}")
    _register(api.db, f"offline-{tag}")
    with api.db.session() as session:
        workers.deregister(session, f"offline-{tag}")
    return Objects(task.id, pending.id, ended.id, f"active-{tag}", f"offline-{tag}", key.id)


def _url(method: str, path: str, objects: Objects) -> str:
    worker = objects.offline_worker if method == "DELETE" else objects.active_worker
    run = objects.ended_run if path.endswith("/retry") else objects.pending_run
    return path.format(
        ref=objects.task_id, run_id=run, worker_id=worker, key_id=objects.key_id, name="check"
    )


@pytest.mark.parametrize(
    ("method", "path", "scope"), GUARDED, ids=[f"{m} {p}" for m, p, _ in GUARDED]
)
def test_route_needs_its_scope(
    api: ApiEnv,
    scope_keys: dict[str, str],
    objects: Objects,
    method: str,
    path: str,
    scope: str,
) -> None:
    url = _url(method, path, objects)
    body = BODIES.get((method, path))

    def call(headers: dict[str, str]) -> int:
        json = body() if body else None
        return api.client.request(method, url, headers=headers, json=json).status_code

    assert call({}) == 401
    assert call(api.auth("scheduler_" + "x" * 32)) == 401
    for other, key in scope_keys.items():
        if scope != ANY and other != scope:
            assert call(api.auth(key)) == 403, f"scope {other}"
    allowed = [scope_keys[scope]] if scope != ANY else list(scope_keys.values())
    for key in allowed:
        status = call(api.auth(key))
        assert 200 <= status < 300, f"{method} {url} with its scope: {status}"


@pytest.mark.parametrize(("method", "path"), sorted(OPEN))
def test_open_routes_need_no_credentials(api: ApiEnv, method: str, path: str) -> None:
    path = path.replace("{name}", "swagger-ui.css")
    assert api.client.request(method, path).status_code == 200


def test_metrics_need_system_read_when_metrics_auth_is_on(
    module_db: Database, tmp_path: Path
) -> None:
    with api_env(module_db, tmp_path, observability={"metrics_auth": True}) as env:
        assert env.client.get("/metrics").status_code == 401
        assert env.client.get("/metrics", headers=env.auth(env.key("task.read"))).status_code == 403
        reader = env.auth(env.key("system.read"))
        assert env.client.get("/metrics", headers=reader).status_code == 200


def test_scheduling_through_the_api_needs_task_execute_beside_task_write(api: ApiEnv) -> None:
    writer = api.auth(api.key("task.write", name="writer-only"))
    both = api.auth(api.key("task.write", "task.execute", name="writer-executor"))
    body = task_body(f"cron-{uuid.uuid4().hex[:8]}", schedule="0 * * * * *")
    refused = api.client.post("/api/tasks", json=body, headers=writer)
    assert refused.status_code == 403
    assert "task.execute" in refused.json()["message"]
    assert api.client.get(f"/api/tasks/{body['name']}", headers=api.admin).status_code == 404
    created = api.client.post("/api/tasks", json=body, headers=both)
    assert created.status_code == 201
    url = f"/api/tasks/{created.json()['id']}"
    patch = {"command": "cat /proc/1/environ"}
    assert api.client.patch(url, json=patch, headers=writer).status_code == 403
    reschedule = {"schedule": "0 0 * * * *"}
    assert api.client.patch(url, json=reschedule, headers=writer).status_code == 403
    assert api.client.get(url, headers=api.admin).json()["command"] == body["command"]
    assert api.client.patch(url, json={"description": "ok"}, headers=writer).status_code == 200
