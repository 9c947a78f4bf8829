"""The http executor: one HTTP request to the URL in the command; success = expected status.

``metadata.http`` (all optional)::

    method            "GET"; any HTTP token
    headers           {"Name": "value"}
    body | json       a text body, or any JSON value sent as application/json
    expected_status   200 or [200, 204]; default: any 2xx
    connect_timeout   seconds to connect (default 10, at most the run's timeout)

The run's timeout bounds the whole exchange. Redirects are not followed (a 3xx is the
answer; list it in expected_status to accept it), and proxy variables of the worker's
environment are ignored. The host is resolved first and the request goes to the
address checked against the outbound policy (:mod:`schedd.executors.netpolicy`:
public addresses only unless ``worker.http_allow`` opens more), so a DNS answer that
changes after the check cannot redirect it. A URL with user information
(``user:password@``) is refused: credentials belong in ``metadata.http.headers``.
The output is the status line and the response body. Task arguments are not used.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schedd.config import WorkerSettings
from schedd.executors.base import (
    Ending,
    Executor,
    Outcome,
    OutputSink,
    RunSpec,
    StopSignal,
    describe_seconds,
)
from schedd.executors.netpolicy import OutboundPolicy

SLICE = 0.2
DEFAULT_CONNECT_TIMEOUT = 10.0


class HttpSpec(BaseModel):
    """``metadata.http`` of an http task."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    method: str = Field("GET", pattern=r"^[A-Za-z]+$", max_length=16)
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    json_body: Any = Field(None, alias="json")
    expected_status: int | list[int] | None = None
    connect_timeout: float = Field(DEFAULT_CONNECT_TIMEOUT, gt=0, le=3600)

    @field_validator("expected_status")
    @classmethod
    def _statuses(cls, value: int | list[int] | None) -> int | list[int] | None:
        values = [value] if isinstance(value, int) else value or []
        if isinstance(value, list) and not value:
            raise ValueError("must not be an empty list")
        for status in values:
            if not 100 <= status <= 599:
                raise ValueError(f"{status} is not an HTTP status (100-599)")
        return value

    def accepts(self, status: int) -> bool:
        if self.expected_status is None:
            return 200 <= status <= 299
        if isinstance(self.expected_status, int):
            return status == self.expected_status
        return status in self.expected_status

    def describe_expected(self) -> str:
        if self.expected_status is None:
            return "2xx"
        if isinstance(self.expected_status, int):
            return str(self.expected_status)
        return " or ".join(map(str, self.expected_status))


def parse_spec(metadata: Any) -> HttpSpec:
    """The task's ``metadata.http``; ValueError with a field-naming message when bad."""
    raw = metadata.get("http", {}) if isinstance(metadata, dict) else {}
    if not isinstance(raw, dict):
        raise ValueError("metadata.http must be an object")
    try:
        spec = HttpSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        message = message.removeprefix("Value error, ")
        raise ValueError(f"metadata.http.{where}: {message}") from None
    if spec.body is not None and "json_body" in spec.model_fields_set:
        raise ValueError("metadata.http: give body or json, not both")
    return spec


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class RequestFailed(Exception):
    """A reason the request could not be made, as one sentence."""


@dataclass
class _Exchange:
    """The request thread's result, handed to the run thread."""

    status: int | None = None
    reason: str = ""
    error: str | None = None


class HttpExecutor(Executor):
    name = "http"

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.policy = OutboundPolicy(settings.http_allow)

    def execute(self, spec: RunSpec, output: OutputSink, stop: StopSignal) -> Outcome:
        started = time.monotonic()
        try:
            http = parse_spec(spec.metadata)
        except ValueError as exc:
            return Outcome(Ending.failed, error=str(exc), duration=0.0)
        done = threading.Event()
        abandoned = threading.Event()
        exchange = _Exchange()

        def request() -> None:
            try:
                self._request(spec, http, output, exchange, abandoned)
            finally:
                done.set()

        # The request runs in its own thread so that a cancel or the timeout ends the run
        # at once; an abandoned request ends by itself within its own timeouts.
        threading.Thread(target=request, name=f"http-run-{spec.run_id}", daemon=True).start()
        deadline = started + spec.timeout
        while not done.wait(max(0.0, min(SLICE, deadline - time.monotonic()))):
            if stop.is_set() or time.monotonic() >= deadline:
                abandoned.set()
                duration = time.monotonic() - started
                if stop.is_set():
                    return Outcome(Ending.stopped, duration=duration)
                return Outcome(
                    Ending.timeout,
                    error=f"timed out after {describe_seconds(spec.timeout)}",
                    duration=duration,
                )
        duration = time.monotonic() - started
        if exchange.status is None:
            return Outcome(Ending.failed, error=exchange.error, duration=duration)
        if http.accepts(exchange.status):
            return Outcome(Ending.completed, duration=duration)
        return Outcome(
            Ending.failed,
            error=f"HTTP status {exchange.status} {exchange.reason}".rstrip()
            + f" (expected {http.describe_expected()})",
            duration=duration,
        )

    def _request(
        self,
        spec: RunSpec,
        http: HttpSpec,
        output: OutputSink,
        exchange: _Exchange,
        abandoned: threading.Event,
    ) -> None:
        timeout = httpx.Timeout(spec.timeout, connect=min(http.connect_timeout, spec.timeout))
        try:
            url, headers, extensions = self._target(spec.command, http)
            content = http.body.encode() if http.body is not None else None
            json_body = http.json_body if "json_body" in http.model_fields_set else None
            with (
                httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
                client.stream(
                    http.method.upper(),
                    url,
                    headers=headers,
                    content=content,
                    json=json_body,
                    extensions=extensions,
                ) as response,
            ):
                output.write(f"HTTP {response.status_code} {response.reason_phrase}\n".encode())
                for chunk in response.iter_bytes():
                    if abandoned.is_set():
                        return
                    output.write(chunk)
                exchange.status = response.status_code
                exchange.reason = response.reason_phrase
        except RequestFailed as exc:
            exchange.error = str(exc)
        except httpx.TimeoutException as exc:
            exchange.error = f"request timed out ({type(exc).__name__})"
        except httpx.HTTPError as exc:
            exchange.error = f"request failed: {exc or type(exc).__name__}"

    def _target(
        self, command: str, http: HttpSpec
    ) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
        """The URL to request, its headers and extensions, after the address check.

        The request goes to the checked address itself (with the original Host header
        and TLS server name), so a DNS answer that changes between the check and the
        connect cannot get around it.
        """
        try:
            url = httpx.URL(command.strip())
        except httpx.InvalidURL as exc:
            raise RequestFailed(f"invalid URL {command!r}: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise RequestFailed(f"not an http(s) URL: {command!r}")
        if url.userinfo:
            raise RequestFailed(
                "the URL carries user information (user:password@); "
                "send credentials in metadata.http.headers instead"
            )
        return pinned(url, dict(http.headers), self.policy)


def pinned(
    url: httpx.URL, headers: dict[str, str], policy: OutboundPolicy
) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """``url`` with its host replaced by the first resolved address ``policy`` allows,
    the headers with the original Host, and the TLS server name as an extension.
    RequestFailed when the host does not resolve or every address is refused."""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = resolve(url.host, port)
    except (socket.gaierror, UnicodeError) as exc:
        raise RequestFailed(f"cannot resolve {url.host!r}: {exc}") from None
    try:
        address = policy.choose(url.host, addresses)
    except PermissionError as exc:
        raise RequestFailed(str(exc)) from None
    if not any(name.lower() == "host" for name in headers):
        headers["Host"] = url.netloc.decode("ascii")
    return url.copy_with(host=address), headers, {"sni_hostname": url.host}
