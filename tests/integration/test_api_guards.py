"""Guards around every route: Host check, security headers, Allow, unknown queries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from schedd.api.guards import host_of
from schedd.db import Database
from tests.apikit import ApiEnv, api_env, task_body


@pytest.fixture
def api(db: Database, tmp_path: Path) -> Iterator[ApiEnv]:
    with api_env(db, tmp_path) as env:
        yield env


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/system/logs?levle=info", "levle"),
        ("/api/tasks?colour=blue", "colour"),
        ("/api/tasks?page=1&sise=5", "sise"),
        ("/api/runs?status=failed&x=1", "x"),
        ("/api/whoami?verbose=1", "verbose"),
    ],
)
def test_unknown_query_parameters_are_422_naming_the_parameter(
    api: ApiEnv, path: str, name: str
) -> None:
    response = api.client.get(path, headers=api.admin)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == name
    assert f"{name}: unknown query parameter" == response.json()["message"]


def test_declared_query_parameters_still_work(api: ApiEnv) -> None:
    response = api.client.get("/api/system/logs?level=info&page=1&size=5", headers=api.admin)
    assert response.status_code == 200, response.text


def test_an_unknown_query_on_a_mutation_changes_nothing(api: ApiEnv) -> None:
    response = api.client.post("/api/tasks?dry_run=1", json=task_body(), headers=api.admin)
    assert response.status_code == 422
    assert api.client.get("/api/tasks", headers=api.admin).json()["total"] == 0


@pytest.mark.parametrize("path", ["/health", "/api/tasks", "/api/nowhere", "/openapi.json"])
def test_every_response_says_nosniff(api: ApiEnv, path: str) -> None:
    response = api.client.get(path, headers=api.admin)
    assert response.headers["x-content-type-options"] == "nosniff"


def test_responses_that_carry_credentials_are_not_stored(api: ApiEnv) -> None:
    key = api.client.post("/api/apikeys", json={"name": "k"}, headers=api.admin)
    token = api.client.post("/api/tokens", json={}, headers=api.admin)
    assert key.status_code == 201 and token.status_code == 201
    assert key.headers["cache-control"] == "no-store"
    assert token.headers["cache-control"] == "no-store"


def test_a_405_lists_every_method_the_path_answers(api: ApiEnv) -> None:
    response = api.client.post("/api/tasks/some-task", headers=api.admin)
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "PATCH", "DELETE"} <= allowed
    assert "POST" not in allowed


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_the_default_hosts_are_served(api: ApiEnv, host: str) -> None:
    port = api.client.base_url.port
    response = api.client.get("/health", headers={"Host": f"{host}:{port}"})
    assert response.status_code in (200, 503)


def test_another_host_is_400_naming_the_key(api: ApiEnv) -> None:
    response = api.client.get("/health", headers={"Host": "rebound.attacker.example"})
    assert response.status_code == 400
    assert "api.allowed_hosts" in response.json()["message"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_allowed_hosts_replaces_the_default(db: Database, tmp_path: Path) -> None:
    with api_env(db, tmp_path, api={"allowed_hosts": ["sched.example.com"]}) as env:
        refused = env.client.get("/health")
        served = env.client.get("/health", headers={"Host": "sched.example.com:443"})
    assert refused.status_code == 400
    assert served.status_code in (200, 503)


def test_a_star_serves_any_host(db: Database, tmp_path: Path) -> None:
    with api_env(db, tmp_path, api={"allowed_hosts": ["*"]}) as env:
        response = env.client.get("/health", headers={"Host": "anything.example"})
    assert response.status_code in (200, 503)


@pytest.mark.parametrize(
    ("header", "host"),
    [("Example.COM:8080", "example.com"), ("[::1]:80", "::1"), ("h.", "h"), ("::1", "::1")],
)
def test_host_of(header: str, host: str) -> None:
    assert host_of(header) == host
