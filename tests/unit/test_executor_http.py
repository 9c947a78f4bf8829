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


def serve(host: str) -> Iterator[Server]:
    """A recording HTTP server on the loopback address ``host``."""
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

    httpd = ThreadingHTTPServer((host, 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://{host}:{httpd.server_address[1]}"
    yield state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    yield from serve("127.0.0.1")


@pytest.fixture
def other_server() -> Iterator[Server]:
    """A server on 127.0.0.2: loopback, but not the address the other tests open."""
    yield from serve("127.0.0.2")


def call(
    url: str,
    *,
    http: dict[str, Any] | None = None,
    timeout: float = 5.0,
    http_allow: tuple[str, ...] = ("127.0.0.1/32",),
    stop: StopSignal | None = None,
) -> tuple[Outcome, str]:
    """One run of the http executor; the test server's 127.0.0.1 is opened unless
    ``http_allow`` says otherwise."""
    sink = Sink()
    executor = HttpExecutor(WorkerSettings(http_allow=list(http_allow)))
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


def test_a_default_worker_refuses_a_loopback_address_without_connecting(
    other_server: Server,
) -> None:
    outcome, output = call(other_server.url + "/ok", http_allow=())
    assert outcome.ending is Ending.failed
    assert outcome.error is not None
    assert "loopback address 127.0.0.2" in outcome.error
    assert "worker.http_allow" in outcome.error
    assert output == ""
    assert other_server.requests == []


def test_http_allow_with_the_address_reaches_it(other_server: Server) -> None:
    outcome, output = call(other_server.url + "/ok", http_allow=("127.0.0.2/32",))
    assert outcome.ending is Ending.completed, outcome.error
    assert output == "HTTP 200 OK\nhello from the server\n"
    assert len(other_server.requests) == 1


def test_http_allow_with_another_address_still_refuses(other_server: Server) -> None:
    outcome, _ = call(other_server.url + "/ok", http_allow=("127.0.0.1/32",))
    assert outcome.ending is Ending.failed
    assert other_server.requests == []


def test_http_allow_with_a_host_name_opens_what_it_resolves_to(server: Server) -> None:
    url = server.url.replace("127.0.0.1", "localhost") + "/ok"
    outcome, _ = call(url, http_allow=("LOCALHOST.",))
    assert outcome.ending is Ending.completed, outcome.error
    refused, _ = call(url, http_allow=("otherhost",))
    assert refused.ending is Ending.failed


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local address 169.254.169.254"),
        ("http://[fe80::1]:8080/", "link-local address fe80::1"),
        ("http://[::ffff:169.254.169.254]/", "carries 169.254.169.254"),
        ("http://[64:ff9b::a9fe:a9fe]/", "carries link-local 169.254.169.254"),
        ("http://0.0.0.0:9/", "unspecified address 0.0.0.0"),
        ("http://[::1]:9/", "loopback address ::1"),
    ],
)
def test_refused_addresses_fail_the_run_naming_address_and_key(url: str, words: str) -> None:
    outcome, output = call(url, http_allow=())
    assert outcome.ending is Ending.failed
    assert outcome.error is not None
    assert words in outcome.error
    assert "worker.http_allow" in outcome.error
    assert output == ""


def test_a_url_with_user_information_is_refused(server: Server) -> None:
    url = server.url.replace("http://", "http://user:secret@") + "/ok"
    outcome, _ = call(url)
    assert outcome.ending is Ending.failed
    assert outcome.error is not None and "user information" in outcome.error
    assert "secret" not in outcome.error
    assert server.requests == []


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
