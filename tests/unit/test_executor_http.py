"""The http executor against a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from schedd.config import WorkerSettings
from schedd.executors.base import Ending, Outcome, StopReason, StopSignal
from schedd.executors.http import HttpExecutor
from tests.workerkit import Sink, spec


@dataclass
class Server:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(url="")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            state.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": body,
                }
            )
            if self.path == "/slow":
                state.release.wait(10)
            status = int(self.path.split("/")[2]) if self.path.startswith("/status/") else 200
            payload = b"hello from the server\n"
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()


def call(
    url: str,
    *,
    http: dict[str, Any] | None = None,
    timeout: float = 5.0,
    allow_link_local: bool = False,
    stop: StopSignal | None = None,
) -> tuple[Outcome, str]:
    sink = Sink()
    executor = HttpExecutor(WorkerSettings(allow_link_local=allow_link_local))
    run = spec(url, executor="http", timeout=timeout, metadata={"http": http or {}})
    return executor.execute(run, sink, stop or StopSignal()), sink.text


def test_a_get_with_a_2xx_answer_completes_and_records_status_and_body(server: Server) -> None:
    outcome, output = call(server.url + "/ok")
    assert outcome.ending is Ending.completed
    assert output == "HTTP 200 OK\nhello from the server\n"
    assert server.requests[0]["method"] == "GET"


def test_an_unexpected_status_fails_the_run_saying_what_was_expected(server: Server) -> None:
    outcome, _ = call(server.url + "/status/500")
    assert outcome.ending is Ending.failed
    assert outcome.error == "HTTP status 500 Internal Server Error (expected 2xx)"


@pytest.mark.parametrize(
    ("expected", "ending"),
    [(404, Ending.completed), ([410, 404], Ending.completed), (200, Ending.failed)],
)
def test_expected_status_may_be_one_status_or_a_list(
    server: Server, expected: int | list[int], ending: Ending
) -> None:
    outcome, _ = call(server.url + "/status/404", http={"expected_status": expected})
    assert outcome.ending is ending


def test_method_headers_and_json_body_are_sent(server: Server) -> None:
    http = {"method": "post", "headers": {"X-Token": "abc"}, "json": {"a": [1, 2]}}
    outcome, _ = call(server.url + "/ok", http=http)
    assert outcome.ending is Ending.completed
    request = server.requests[0]
    assert request["method"] == "POST"
    assert request["headers"]["X-Token"] == "abc"
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == {"a": [1, 2]}


def test_a_text_body_is_sent_as_is(server: Server) -> None:
    outcome, _ = call(server.url + "/ok", http={"method": "PUT", "body": "plain ü"})
    assert outcome.ending is Ending.completed
    assert server.requests[0]["body"] == "plain ü"


def test_the_host_header_names_the_host_of_the_url(server: Server) -> None:
    url = server.url.replace("127.0.0.1", "localhost") + "/ok"
    outcome, _ = call(url)
    assert outcome.ending is Ending.completed
    assert server.requests[0]["headers"]["Host"] == url.split("/")[2]


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://[fe80::1]:8080/", "fe80::1"),
        ("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254"),
        ("https://169.254.10.1/", "169.254.10.1"),
    ],
)
def test_link_local_addresses_are_refused_without_a_connection(url: str, address: str) -> None:
    started = time.monotonic()
    outcome, output = call(url)
    assert outcome.ending is Ending.failed
    assert outcome.error is not None
    assert f"link-local or metadata address {address}" in outcome.error
    assert "worker.allow_link_local" in outcome.error
    assert output == ""
    assert time.monotonic() - started < 1


def test_allow_link_local_lets_the_request_go_out() -> None:
    outcome, _ = call(
        "http://169.254.169.254/",
        http={"connect_timeout": 0.3},
        timeout=2,
        allow_link_local=True,
    )
    assert "allow_link_local" not in (outcome.error or "")


def test_the_run_timeout_bounds_the_whole_request(server: Server) -> None:
    started = time.monotonic()
    outcome, _ = call(server.url + "/slow", timeout=0.5)
    assert outcome.ending is Ending.timeout
    assert outcome.error == "timed out after 0.5 s"
    assert time.monotonic() - started < 1.5


def test_a_cancel_ends_a_waiting_request_at_once(server: Server) -> None:
    stop = StopSignal()
    threading.Timer(0.3, stop.stop, args=(StopReason.cancelled,)).start()
    started = time.monotonic()
    outcome, _ = call(server.url + "/slow", stop=stop)
    assert outcome.ending is Ending.stopped
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("http", "message"),
    [
        ({"expected_status": 999}, "metadata.http.expected_status: "),
        ({"verb": "GET"}, "metadata.http.verb: unknown field"),
        ({"method": "GET /x"}, "metadata.http.method: "),
        ({"body": "x", "json": {}}, "metadata.http: give body or json, not both"),
    ],
)
def test_bad_metadata_fails_the_run_naming_the_field(
    server: Server, http: dict[str, Any], message: str
) -> None:
    outcome, _ = call(server.url + "/ok", http=http)
    assert outcome.ending is Ending.failed
    assert outcome.error is not None and outcome.error.startswith(message)
    assert server.requests == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/file", "not an http(s) URL: 'ftp://example.com/file'"),
        ("http://no-such-host.invalid/", "cannot resolve 'no-such-host.invalid'"),
    ],
)
def test_an_unusable_url_fails_the_run_with_the_reason(url: str, message: str) -> None:
    outcome, _ = call(url)
    assert outcome.ending is Ending.failed
    assert outcome.error is not None and outcome.error.startswith(message)
