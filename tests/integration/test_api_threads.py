"""A sync route runs in one worker thread together with the commit of its session.

FastAPI hops to a thread for a sync route, again to validate what it returns, and
``get_session`` again to commit; the API's ``Router`` makes it one hop. These tests pin
down that the transaction semantics did not change with it: the commit follows the
route in its thread, a route that raises commits nothing, the after-commit hooks run
after the commit, and no route is left to FastAPI's own thread hop.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from schedd.api.app import api_routes
from schedd.api.deps import DbSession, Router, TaskReader, TaskWriter, after_commit
from schedd.db import Database
from schedd.errors import Conflict
from schedd.models import AuditEntry
from schedd.services import audit
from tests.apikit import ApiEnv, api_env, task_body


@pytest.fixture
def env(db: Database, tmp_path: Path) -> Iterator[tuple[ApiEnv, dict[str, list[object]]]]:
    seen: dict[str, list[object]] = {"route": [], "commit": [], "hook": []}

    @sa.event.listens_for(Session, "after_commit")
    def _committed(session: Session) -> None:
        if session.info.get("probe"):
            seen["commit"].append(threading.get_ident())

    router = Router()

    @router.post("/api/probe/{outcome}")
    def probe(outcome: str, session: DbSession, caller: TaskWriter) -> dict[str, str]:
        session.info["probe"] = True
        seen["route"].append(threading.get_ident())
        audit.record(session, caller.actor, "probe", "probe:1")
        after_commit(session, lambda: seen["hook"].append(len(seen["commit"])))
        if outcome == "fail":
            raise Conflict("the probe fails after writing")
        return {"outcome": outcome}

    @router.get("/api/probe")
    def whoami_probe(caller: TaskReader) -> dict[str, str]:
        return {"actor": caller.actor}

    with api_env(db, tmp_path) as api:
        api.app.router.routes.extend(router.routes)
        yield api, seen
    sa.event.remove(Session, "after_commit", _committed)


def probes(db: Database) -> list[str]:
    """The outcomes of the probe's audit entries (a failed mutation records its own)."""
    with db.session() as session:
        rows = session.exec(select(AuditEntry).where(AuditEntry.action == "probe")).all()
        return [row.outcome for row in rows]


def test_the_route_and_its_commit_share_one_worker_thread(
    env: tuple[ApiEnv, dict[str, list[object]]],
) -> None:
    api, seen = env
    response = api.client.post("/api/probe/ok", headers=api.admin)
    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "ok"}
    assert seen["route"] == seen["commit"]
    assert seen["route"][0] != threading.get_ident()
    assert seen["hook"] == [1]  # after the commit
    assert probes(api.db) == ["ok"]


def test_a_read_takes_two_thread_hops_the_credential_check_and_the_route(
    env: tuple[ApiEnv, dict[str, list[object]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = env
    created = api.client.post("/api/tasks", json=task_body("hops"), headers=api.admin)
    assert created.status_code == 201, created.text
    hops: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        called = func
        while isinstance(called, functools.partial):
            called = called.func
        hops.append(getattr(called, "__name__", type(called).__name__))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    response = api.client.get(f"/api/tasks/{created.json()['id']}", headers=api.admin)
    assert response.status_code == 200
    # RequireScope (FastAPI's hop for a sync dependency), then the route with its
    # commit; no hop to validate the response, none to commit.
    assert hops == ["RequireScope", "_call_and_commit"]


def test_a_route_that_raises_commits_nothing_and_runs_no_hook(
    env: tuple[ApiEnv, dict[str, list[object]]],
) -> None:
    api, seen = env
    response = api.client.post("/api/probe/fail", headers=api.admin)
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert seen["commit"] == []
    assert seen["hook"] == []
    assert probes(api.db) == ["conflict"]  # the failure's entry, not the route's


def test_a_route_without_a_session_still_authenticates_and_commits(
    env: tuple[ApiEnv, dict[str, list[object]]],
) -> None:
    api, _ = env
    assert api.client.get("/api/probe").status_code == 401
    response = api.client.get("/api/probe", headers=api.admin)
    assert response.status_code == 200
    assert response.json()["actor"].startswith("key:")


def test_every_route_of_the_api_is_a_coroutine(
    env: tuple[ApiEnv, dict[str, list[object]]],
) -> None:
    api, _ = env
    sync = [route.path for route in api_routes(api.app) if not _is_coroutine(route.endpoint)]
    assert sync == []


def _is_coroutine(endpoint: object) -> bool:
    return inspect.iscoroutinefunction(endpoint)
