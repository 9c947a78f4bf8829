"""HttpClient against a fake transport, and how schedctl finds the API and its key."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from schedctl import discovery
from schedctl.client import RateLimited, ServerError, ServerUnreachable
from schedctl.http_client import HttpClient
from schedd.api import bootstrap
from schedd.config import Settings, load_settings
from schedd.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    SchedError,
    Unauthorized,
)


def client_answering(
    status: int, body: object, seen: list[httpx.Request] | None = None
) -> HttpClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if isinstance(body, str | bytes):
            return httpx.Response(status, content=body, headers={"content-type": "text/html"})
        return httpx.Response(status, json=body)

    return HttpClient("http://sched.test/", "scheduler_key", transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (404, "not_found", NotFound),
        (401, "unauthorized", Unauthorized),
        (403, "forbidden", Forbidden),
        (409, "conflict", Conflict),
        (422, "invalid_input", InvalidInput),
        (400, "bad_request", InvalidInput),
    ],
)
def test_an_error_body_becomes_the_services_error(
    status: int, code: str, kind: type[SchedError]
) -> None:
    body = {"code": code, "message": "task 'x' not found", "field": "name"}
    with pytest.raises(kind) as caught:
        client_answering(status, body).get_task("x")
    assert caught.value.field == "name"
    if kind is Unauthorized:  # with where the refused credential came from
        assert caught.value.message == (
            "task 'x' not found (the key or token from --token was refused by http://sched.test)"
        )
    else:
        assert caught.value.message == "task 'x' not found"


@pytest.mark.parametrize(
    ("headers", "expected", "retry_after"),
    [
        (
            {"Retry-After": "42"},
            "too many failed authentications from this address or for this key: "
            "retry after 42 s (HTTP 429)",
            42,
        ),
        (
            {},
            "too many failed authentications from this address or for this key (HTTP 429); "
            "wait, then retry",
            None,
        ),
    ],
)
def test_a_429_names_how_long_to_wait(
    headers: dict[str, str], expected: str, retry_after: int | None
) -> None:
    body = {
        "code": "too_many_requests",
        "message": "too many failed authentications from this address or for this key; "
        "retry in 42 s",
        "field": None,
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json=body, headers=headers)

    client = HttpClient("http://sched.test", "k", transport=httpx.MockTransport(handler))
    with pytest.raises(RateLimited) as caught:
        client.get_task("x")
    assert caught.value.message == expected
    assert caught.value.retry_after == retry_after


def test_a_server_failure_is_internal_and_names_no_body() -> None:
    with pytest.raises(ServerError, match="internal error"):
        client_answering(500, {"code": "internal", "message": "internal error"}).get_task("x")


def test_a_page_that_is_not_json_says_so() -> None:
    with pytest.raises(ServerError, match="not JSON"):
        client_answering(200, "<html>hello</html>").get_task("x")


def test_health_keeps_the_body_of_a_503() -> None:
    body = {"status": "unavailable", "database": "unavailable", "broker": "none", "version": "1"}
    assert client_answering(503, body).health() == body


def test_requests_carry_the_bearer_token_and_quote_names() -> None:
    seen: list[httpx.Request] = []
    client_answering(200, {"id": 1}, seen).get_task("数据 job")
    assert seen[0].headers["authorization"] == "Bearer scheduler_key"
    assert seen[0].url.raw_path == b"/api/tasks/%E6%95%B0%E6%8D%AE%20job"


def test_a_name_with_a_slash_is_found_through_the_list() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/tasks":
            items = [{"id": 7, "name": "etl/daily"}, {"id": 8, "name": "etl/daily-2"}]
            return httpx.Response(200, json={"items": items, "total": 2, "page": 1, "size": 500})
        return httpx.Response(200, json={"id": 7})

    client = HttpClient("http://sched.test", None, transport=httpx.MockTransport(handler))
    client.pause_task("etl/daily")
    assert seen[-1].url.path == "/api/tasks/7/pause"


def test_trigger_sends_arguments_only_when_given() -> None:
    seen: list[httpx.Request] = []
    client = client_answering(202, {"id": 1}, seen)
    client.trigger_task("job")
    client.trigger_task("job", ["a", "b"])
    assert seen[0].content == b""
    assert json.loads(seen[1].content) == {"arguments": ["a", "b"]}


def test_nothing_listening_is_server_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HttpClient(f"http://127.0.0.1:{port}", None)
    with pytest.raises(
        ServerUnreachable, match=f"cannot reach the sched API at http://127.0.0.1:{port}"
    ):
        client.list_tasks()


# -- discovery ------------------------------------------------------------------------


def test_discovery_reads_the_file_names_the_api_writes() -> None:
    assert (discovery.API_URL_FILE, discovery.ADMIN_KEY_FILE) == (
        bootstrap.API_URL_FILE,
        bootstrap.ADMIN_KEY_FILE,
    )
    for host in ("0.0.0.0", "::", "127.0.0.1", "::1", "sched.example", ""):
        assert discovery.base_url(host, 8080) == bootstrap.base_url(host, 8080)


def settings_in(
    home: Path, url: str | None = None, key: str | None = None
) -> Callable[[], Settings]:
    env = {"HOME": str(home), "XDG_DATA_HOME": str(home / "data")}
    data = home / "data" / "sched"
    data.mkdir(parents=True, exist_ok=True)
    if url:
        (data / "api.url").write_text(url + "\n")
    if key:
        (data / "admin.key").write_text(key + "\n")
    return lambda: load_settings(None, env)


def test_without_flags_the_local_daemons_url_and_key_are_used(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, "http://127.0.0.1:9999", "scheduler_admin")
    found = discovery.find_endpoint(None, "--api", None, "--token", settings)
    assert (found.url, found.token) == ("http://127.0.0.1:9999", "scheduler_admin")
    assert found.url_source.endswith("api.url")


def test_the_admin_key_is_never_sent_to_another_server(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, "http://127.0.0.1:9999", "scheduler_admin")
    found = discovery.find_endpoint("https://sched.example", "--api", None, "--token", settings)
    assert (found.url, found.token) == ("https://sched.example", None)


def test_a_given_token_wins_over_the_key_file(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, "http://127.0.0.1:9999", "scheduler_admin")
    found = discovery.find_endpoint(None, "--api", "tok", "SCHED_TOKEN", settings)
    assert (found.token, found.token_source) == ("tok", "SCHED_TOKEN")


def test_without_files_the_configured_address_is_used(tmp_path: Path) -> None:
    found = discovery.find_endpoint(None, "--api", None, "--token", settings_in(tmp_path))
    assert (found.url, found.token, found.url_source) == (
        "http://127.0.0.1:8080",
        None,
        "configuration",
    )
