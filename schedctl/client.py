"""The one interface commands talk through, over HTTP or straight to the database.

Both implementations return the API's JSON shapes as plain data (dicts and lists, times
as ISO-8601 strings with ``Z``), so a command renders the same thing, and
``--output json`` prints the same document, whichever mode it ran in:

- :class:`schedctl.http_client.HttpClient` calls the HTTP API with a Bearer token;
- :class:`schedctl.direct_client.DirectClient` opens the database (``--db URL``) and
  calls the same ``schedd.services`` functions the API routes call, one transaction
  per call.

Errors are the ``schedd.errors`` hierarchy in both modes (an HTTP error body is turned
back into the error the service raised), so exit codes do not depend on the mode.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from schedd.errors import SchedError, Unavailable

Json = dict[str, Any]

LIST_PAGE_SIZE = 500  # the API's largest page: whole-list walks use the fewest calls


class ServerUnreachable(Unavailable):
    """Nothing answers at the API address, or it does not answer in time."""

    code = "unreachable"


class ServerError(SchedError):
    """The server failed (HTTP 5xx other than 503), or answered something unexpected."""

    code = "internal"


class RateLimited(SchedError):
    """The API refuses to authenticate for now (HTTP 429): too many failed
    authentications from this address or for this key prefix."""

    code = "too_many_requests"

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotSupported(SchedError):
    """The operation does not exist in this mode (a token needs the API to mint it)."""

    code = "usage"


class Client(ABC):
    """Everything schedctl asks of sched. ``ref`` is a task id or name."""

    mode: str  # "http" or "direct", for messages

    @abstractmethod
    def describe(self) -> str:
        """Where this client works: the API URL, or the database (password hidden)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tasks ------------------------------------------------------------------------

    @abstractmethod
    def create_task(self, body: Json) -> Json: ...

    @abstractmethod
    def list_tasks(
        self,
        *,
        status: str | None = None,
        tag: str | None = None,
        executor: str | None = None,
        name: str | None = None,
        page: int = 1,
        size: int = 50,
    ) -> Json: ...

    @abstractmethod
    def get_task(self, ref: str) -> Json: ...

    @abstractmethod
    def update_task(self, ref: str, body: Json) -> Json: ...

    @abstractmethod
    def delete_task(self, ref: str, *, force: bool = False) -> None: ...

    @abstractmethod
    def trigger_task(self, ref: str, arguments: list[str] | None = None) -> Json:
        """Start a manual run now; returns the run."""

    @abstractmethod
    def pause_task(self, ref: str) -> Json: ...

    @abstractmethod
    def resume_task(self, ref: str) -> Json: ...

    @abstractmethod
    def task_runs(self, ref: str, *, page: int = 1, size: int = 50) -> Json: ...

    @abstractmethod
    def next_fire_times(self, ref: str, count: int = 5) -> Json: ...

    # -- runs -------------------------------------------------------------------------

    @abstractmethod
    def list_runs(
        self,
        *,
        status: str | None = None,
        task: str | None = None,
        worker: str | None = None,
        since: str | None = None,
        page: int = 1,
        size: int = 50,
    ) -> Json: ...

    @abstractmethod
    def get_run(self, run_id: int) -> Json: ...

    @abstractmethod
    def run_output(self, run_id: int, offset: int = 0) -> Json:
        """``{"data", "offset", "next_offset", "finished"}`` from byte ``offset``."""

    @abstractmethod
    def cancel_run(self, run_id: int) -> Json: ...

    @abstractmethod
    def retry_run(self, run_id: int) -> Json: ...

    # -- workers ----------------------------------------------------------------------

    @abstractmethod
    def list_workers(self, *, status: str | None = None, page: int = 1, size: int = 50) -> Json: ...

    @abstractmethod
    def get_worker(self, worker_id: str) -> Json: ...

    @abstractmethod
    def drain_worker(self, worker_id: str) -> Json: ...

    @abstractmethod
    def remove_worker(self, worker_id: str) -> None: ...

    # -- system -----------------------------------------------------------------------

    @abstractmethod
    def health(self) -> Json: ...

    @abstractmethod
    def stats(self) -> Json: ...

    @abstractmethod
    def system_logs(
        self,
        *,
        level: str | None = None,
        component: str | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        page: int = 1,
        size: int = 50,
    ) -> Json: ...

    @abstractmethod
    def audit_log(self, *, page: int = 1, size: int = 50) -> Json: ...

    # -- alerts -----------------------------------------------------------------------

    @abstractmethod
    def notify_channels(self) -> list[Json]:
        """The configured notification channels (URLs show scheme and host only)."""

    @abstractmethod
    def notify_test(self, channel: str) -> Json:
        """Send a test message now; Unavailable with the receiver's error."""

    @abstractmethod
    def notify_deliveries(
        self,
        *,
        task: str | None = None,
        status: str | None = None,
        channel: str | None = None,
        page: int = 1,
        size: int = 50,
    ) -> Json: ...

    # -- credentials ------------------------------------------------------------------

    @abstractmethod
    def create_api_key(self, name: str, scopes: list[str], expires_at: str | None = None) -> Json:
        """A new key; the response holds the key itself, shown this once."""

    @abstractmethod
    def list_api_keys(
        self, *, include_revoked: bool = False, page: int = 1, size: int = 50
    ) -> Json: ...

    @abstractmethod
    def revoke_api_key(self, key_id: int) -> None: ...

    @abstractmethod
    def issue_token(self, scopes: list[str] | None, ttl_seconds: int | None) -> Json: ...

    @abstractmethod
    def whoami(self) -> Json: ...

    # -- helpers built on the above ---------------------------------------------------

    def walk(self, lister: Callable[..., Json], **filters: Any) -> Iterator[Json]:
        """Every item of a paged list, page after page."""
        page = 1
        while True:
            result = lister(page=page, size=LIST_PAGE_SIZE, **filters)
            yield from result["items"]
            if page * result["size"] >= result["total"] or not result["items"]:
                return
            page += 1

    def all_tasks(self, **filters: Any) -> list[Json]:
        return list(self.walk(self.list_tasks, **filters))

    def task_names(self, ids: Iterable[int]) -> dict[int, str]:
        """Names of the tasks with ``ids`` (missing ones are left out)."""
        wanted = set(ids)
        if not wanted:
            return {}
        return {t["id"]: t["name"] for t in self.all_tasks() if t["id"] in wanted}

    def task_ids(self, refs: Iterable[str]) -> list[int]:
        """Task ids for ids or names (NotFound names the first unknown one)."""
        return [int(ref) if ref.isdigit() else self.get_task(ref)["id"] for ref in refs]
