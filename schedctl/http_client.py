"""The HTTP implementation of :class:`schedctl.client.Client` (httpx, Bearer auth)."""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import quote

# httpx's package imports its command-line client (Click, Rich, Pygments) whenever
# Click and Rich are installed, as they are here: about 60 ms of a `schedctl` command
# for a module schedctl never uses. A None entry makes that import fail, which httpx
# handles (its `httpx` script is then a stub); only when httpx was not imported yet.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
import httpx  # noqa: E402

from schedctl.client import Client, Json, RateLimited, ServerError, ServerUnreachable
from schedd.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    SchedError,
    Unauthorized,
    Unavailable,
)

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0

# The API's error body names its class in "code"; the status is the fallback.
_BY_CODE: dict[str, type[SchedError]] = {
    cls.code: cls
    for cls in (InvalidInput, NotFound, Conflict, Unauthorized, Forbidden, Unavailable)
}
_BY_STATUS: dict[int, type[SchedError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: InvalidInput,
    422: InvalidInput,
    503: Unavailable,
}


def _seg(value: str | int) -> str:
    """A path segment: task names may hold '/', spaces or any Unicode."""
    return quote(str(value), safe="")


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def error_from(response: httpx.Response) -> SchedError:
    """The sched error an HTTP error response stands for (one line, no body dump)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    message = field = code = None
    if isinstance(body, dict):
        code, message, field = body.get("code"), body.get("message"), body.get("field")
        if message is None and isinstance(body.get("detail"), str):
            message = body["detail"]  # a framework error without the sched body
    status = response.status_code
    if status == 429:
        return _rate_limited(response, message)
    if not isinstance(message, str) or not message:
        message = f"HTTP {status} {response.reason_phrase} from {response.request.url.path}"
    kind = _BY_CODE.get(code or "") or _BY_STATUS.get(status)
    if kind is None:
        return ServerError(f"server error: {message}")
    return kind(message, field=field if isinstance(field, str) else None)


def _rate_limited(response: httpx.Response, message: object) -> RateLimited:
    """One line naming how long to wait (the Retry-After header, in seconds)."""
    header = response.headers.get("retry-after", "").strip()
    retry_after = int(header) if header.isdigit() else None
    reason = message if isinstance(message, str) and message else "too many requests"
    reason = reason.split("; retry in ", 1)[0]
    if retry_after is None:
        return RateLimited(f"{reason} (HTTP 429); wait, then retry")
    return RateLimited(f"{reason}: retry after {retry_after} s (HTTP 429)", retry_after)


class HttpClient(Client):
    mode = "http"

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = READ_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        token_source: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # Where the credential came from, for the hint on a 401.
        self.token_source = (token_source or "--token") if token else None
        headers = {"Accept": "application/json", "User-Agent": "schedctl"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def describe(self) -> str:
        return self.base_url

    def _credential_hint(self) -> str:
        if self.token_source is None:
            return (
                "no credential was sent: set --token or SCHED_TOKEN; a first key comes from "
                "schedctl --db DATABASE_URL apikey create NAME --scope all"
            )
        if self.token_source in ("--token", "SCHED_TOKEN"):
            return f"the key or token from {self.token_source} was refused by {self.base_url}"
        return (
            f"sent the admin key from {self.token_source}, which {self.base_url} does not"
            " know: set --token or SCHED_TOKEN"
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        accept: tuple[int, ...] = (),
    ) -> Any:
        """One API call; the decoded JSON body, or None for an empty answer.

        An error status raises its sched error, unless it is in ``accept``.
        """
        try:
            response = self._http.request(method, path, params=params, json=body)
        except httpx.TimeoutException as exc:
            raise ServerUnreachable(
                f"the sched API at {self.base_url} did not answer in time ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ServerUnreachable(
                f"cannot reach the sched API at {self.base_url}: {reason} "
                "(is schedd running? set --api or SCHED_API)"
            ) from exc
        if response.is_error and response.status_code not in accept:
            error = error_from(response)
            if isinstance(error, Unauthorized):
                hint = self._credential_hint()
                raise Unauthorized(f"{error.message} ({hint})", field=error.field) from None
            raise error
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ServerError(
                f"{self.base_url}{path} answered {response.headers.get('content-type', 'no type')},"
                " not JSON: is --api the address of a sched API?"
            ) from exc

    def _object(self, method: str, path: str, **kwargs: Any) -> Json:
        data = self.request(method, path, **kwargs)
        if not isinstance(data, dict):
            raise ServerError(f"{method} {path} answered {type(data).__name__}, not an object")
        return data

    def _get(self, path: str, **params: Any) -> Json:
        return self._object("GET", path, params=_params(**params))

    def _post(self, path: str, body: Any = None, **params: Any) -> Json:
        return self._object("POST", path, params=_params(**params), body=body)

    # -- tasks ------------------------------------------------------------------------

    def _task(self, ref: str) -> str:
        """The path of a task by id or name."""
        if "/" not in ref:
            return f"/api/tasks/{_seg(ref)}"
        # Servers decode %2F before routing, so such a name cannot be a path segment.
        for task in self.walk(self.list_tasks, name=ref):
            if task["name"] == ref:
                return f"/api/tasks/{task['id']}"
        raise NotFound(f"task {ref!r} not found")

    def create_task(self, body: Json) -> Json:
        return self._post("/api/tasks", body)

    def list_tasks(
        self,
        *,
        status: str | None = None,
        tag: str | None = None,
        executor: str | None = None,
        name: str | None = None,
        page: int = 1,
        size: int = 50,
    ) -> Json:
        return self._get(
            "/api/tasks",
            status=status,
            tag=tag,
            executor=executor,
            name=name,
            page=page,
            size=size,
        )

    def get_task(self, ref: str) -> Json:
        return self._get(self._task(ref))

    def update_task(self, ref: str, body: Json) -> Json:
        path = self._task(ref)
        return self._object("PATCH", path, body=body)

    def delete_task(self, ref: str, *, force: bool = False) -> None:
        params = {"force": "true"} if force else None
        self.request("DELETE", self._task(ref), params=params)

    def trigger_task(self, ref: str, arguments: list[str] | None = None) -> Json:
        body = None if arguments is None else {"arguments": arguments}
        return self._post(f"{self._task(ref)}/trigger", body)

    def pause_task(self, ref: str) -> Json:
        return self._post(f"{self._task(ref)}/pause")

    def resume_task(self, ref: str) -> Json:
        return self._post(f"{self._task(ref)}/resume")

    def task_runs(self, ref: str, *, page: int = 1, size: int = 50) -> Json:
        path = f"{self._task(ref)}/runs"
        return self._get(path, page=page, size=size)

    def next_fire_times(self, ref: str, count: int = 5) -> Json:
        return self._get(f"{self._task(ref)}/next", count=count)

    # -- runs -------------------------------------------------------------------------

    def list_runs(
        self,
        *,
        status: str | None = None,
        task: str | None = None,
        worker: str | None = None,
        since: str | None = None,
        page: int = 1,
        size: int = 50,
    ) -> Json:
        return self._get(
            "/api/runs",
            status=status,
            task=task,
            worker=worker,
            since=since,
            page=page,
            size=size,
        )

    def get_run(self, run_id: int) -> Json:
        return self._get(f"/api/runs/{run_id}")

    def run_output(self, run_id: int, offset: int = 0) -> Json:
        return self._get(f"/api/runs/{run_id}/output", offset=offset)

    def cancel_run(self, run_id: int) -> Json:
        return self._post(f"/api/runs/{run_id}/cancel")

    def retry_run(self, run_id: int) -> Json:
        return self._post(f"/api/runs/{run_id}/retry")

    # -- workers ----------------------------------------------------------------------

    def list_workers(self, *, status: str | None = None, page: int = 1, size: int = 50) -> Json:
        return self._get("/api/workers", status=status, page=page, size=size)

    def get_worker(self, worker_id: str) -> Json:
        return self._get(f"/api/workers/{_seg(worker_id)}")

    def drain_worker(self, worker_id: str) -> Json:
        return self._post(f"/api/workers/{_seg(worker_id)}/drain")

    def remove_worker(self, worker_id: str) -> None:
        self.request("DELETE", f"/api/workers/{_seg(worker_id)}")

    # -- system -----------------------------------------------------------------------

    def health(self) -> Json:
        # /health answers 503 with its usual body when the database is down.
        return self._object("GET", "/health", accept=(503,))

    def stats(self) -> Json:
        return self._get("/api/system/stats")

    def notify_channels(self) -> list[Json]:
        data = self.request("GET", "/api/notify/channels")
        if not isinstance(data, list):
            raise ServerError(f"GET /api/notify/channels answered {type(data).__name__}")
        return data

    def notify_test(self, channel: str) -> Json:
        return self._post(f"/api/notify/channels/{_seg(channel)}/test")

    def notify_deliveries(
        self,
        *,
        task: str | None = None,
        status: str | None = None,
        channel: str | None = None,
        page: int = 1,
        size: int = 50,
    ) -> Json:
        return self._get(
            "/api/notify/deliveries",
            task=task,
            status=status,
            channel=channel,
            page=page,
            size=size,
        )

    def system_logs(
        self,
        *,
        level: str | None = None,
        component: str | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        page: int = 1,
        size: int = 50,
    ) -> Json:
        return self._get(
            "/api/system/logs",
            level=level,
            component=component,
            start_time=start_time,
            end_time=end_time,
            page=page,
            size=size,
        )

    def audit_log(self, *, page: int = 1, size: int = 50) -> Json:
        return self._get("/api/audit", page=page, size=size)

    # -- credentials ------------------------------------------------------------------

    def create_api_key(self, name: str, scopes: list[str], expires_at: str | None = None) -> Json:
        body: Json = {"name": name, "scopes": scopes}
        if expires_at is not None:
            body["expires_at"] = expires_at
        return self._post("/api/apikeys", body)

    def list_api_keys(
        self, *, include_revoked: bool = False, page: int = 1, size: int = 50
    ) -> Json:
        flag = "true" if include_revoked else None
        return self._get("/api/apikeys", include_revoked=flag, page=page, size=size)

    def revoke_api_key(self, key_id: int) -> None:
        self.request("DELETE", f"/api/apikeys/{key_id}")

    def issue_token(self, scopes: list[str] | None, ttl_seconds: int | None) -> Json:
        body: Json = {}
        if scopes is not None:
            body["scopes"] = scopes
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        return self._post("/api/tokens", body)

    def whoami(self) -> Json:
        return self._get("/api/whoami")
