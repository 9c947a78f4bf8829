"""What routes depend on: the app's state and the authenticated caller with a scope.

Every route under /api declares one of the scope dependencies below (or
``Authenticated``); the route test walks ``app.routes`` and fails on any route that has
neither and is not on its short list of open routes.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.datastructures import DefaultPlaceholder
from fastapi.exceptions import ResponseValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from schedd.api import authlimit
from schedd.brokers.base import Broker
from schedd.config import Settings
from schedd.db import Database
from schedd.errors import Forbidden, Unauthorized
from schedd.services import auth
from schedd.services.auth import Principal
from schedd.types import utcnow

log = logging.getLogger("schedd.api")
T = TypeVar("T")


@dataclass
class ApiState:
    """Everything a request handler needs, built once by ``create_app``."""

    settings: Settings
    db: Database
    broker: Broker | None
    tasks_changed: threading.Event | None
    jwt_secret: str
    metrics_registry: CollectorRegistry
    db_slots: anyio.Semaphore
    auth_failures: authlimit.FailureLimiter
    started_at: datetime = field(default_factory=utcnow)

    def notify_tasks_changed(self) -> None:
        """Wake this process's scheduler (call after the commit)."""
        if self.tasks_changed is not None:
            self.tasks_changed.set()


async def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(get_state)]
_AFTER_COMMIT = "sched_after_commit"
_COMMITTED = "sched_committed"


async def get_session(state: State) -> AsyncIterator[Session]:
    """One session, one transaction per request, shared by the credential check and the
    route; committed when the route returns, rolled back when it raises. Then the
    route's :func:`after_commit` hooks run, all before the response is sent.

    Requests wait for a database slot in the event loop (``ApiState.db_slots``), not in
    a thread: on SQLite, whose writers queue on one lock, a busy connection would sleep
    in SQLite's own back-off instead of being handed the lock when it is free.
    """
    async with state.db_slots:
        # Like Database.session(), spread over the request: the session connects on
        # first use, in the route's thread; commit and rollback run in a worker thread,
        # the route's own when it is a Router route (one hop for the route and its
        # commit, see ``in_worker_thread``).
        session = Session(state.db.engine, expire_on_commit=False)
        try:
            yield session
        except BaseException:
            await run_in_threadpool(_end, session, commit=False)
            raise
        if not session.info.pop(_COMMITTED, False):
            await run_in_threadpool(_end, session, commit=True)
    for hook in session.info.pop(_AFTER_COMMIT, []):
        await run_in_threadpool(_run_hook, hook)


def _end(session: Session, *, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


def _call_and_commit(
    route: Callable[..., T], arguments: dict[str, Any], render: Callable[[Any], Response] | None
) -> T | Response:
    result = route(**arguments)
    # The response is validated and serialised before the commit: a value that cannot
    # be served must roll the change back, not leave a committed row behind a 500.
    response = render(result) if render is not None else result
    for value in arguments.values():
        if isinstance(value, Session):  # the request's session (DbSession)
            _end(value, commit=True)
            value.info[_COMMITTED] = True
    return response


def in_worker_thread(route: Callable[..., Any]) -> Callable[..., Any]:
    """A sync route as a coroutine that runs the route, renders its response and
    commits its session in one worker thread. FastAPI would hop to a thread for the
    route, again to validate its return value and again (:func:`get_session`) to
    commit: each hop costs about as much CPU as a primary-key query. A route that
    raises, or whose return value does not validate or serialise, commits nothing
    (get_session rolls back); the after-commit hooks still run after the database
    slot is released. :class:`Router` gives the endpoint its renderer (the route's
    response model) once the route exists. Coroutines, and anything that is not a
    plain function, are returned as they are."""
    if not inspect.isfunction(route) or inspect.iscoroutinefunction(route):
        return route
    renderer: list[Callable[[Any], Response]] = []

    # FastAPI reads the parameters, the return type and the docs through __wrapped__.
    @functools.wraps(route)
    async def endpoint(**arguments: Any) -> Any:
        render = renderer[0] if renderer else None
        return await run_in_threadpool(_call_and_commit, route, arguments, render)

    endpoint.sched_renderer = renderer  # type: ignore[attr-defined]
    return endpoint


def _renderer(api_route: APIRoute) -> Callable[[Any], Response] | None:
    """What FastAPI would do with the route's return value (validate against the
    response model, serialise to JSON), as a function to call before the commit."""
    field = api_route.response_field
    if field is None or not isinstance(api_route.response_class, DefaultPlaceholder):
        return None
    status = api_route.status_code or 200

    def render(value: Any) -> Response:
        if isinstance(value, Response):
            return value
        checked, errors = field.validate(value, {}, loc=("response",))
        if errors:
            raise ResponseValidationError(errors=errors, body=value)
        body = field.serialize_json(
            checked,
            include=api_route.response_model_include,
            exclude=api_route.response_model_exclude,
            by_alias=api_route.response_model_by_alias,
            exclude_unset=api_route.response_model_exclude_unset,
            exclude_defaults=api_route.response_model_exclude_defaults,
            exclude_none=api_route.response_model_exclude_none,
        )
        return Response(body, status_code=status, media_type="application/json")

    return render


class Router(APIRouter):
    """The API's routers: every sync route runs through :func:`in_worker_thread`, and
    every route refuses query parameters it does not declare."""

    def __init__(self, **options: Any) -> None:
        from schedd.api.guards import reject_unknown_query

        options["dependencies"] = [
            *options.get("dependencies", []),
            Depends(reject_unknown_query),
        ]
        super().__init__(**options)

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        wrapped = in_worker_thread(endpoint)
        super().add_api_route(path, wrapped, **options)
        cell = getattr(wrapped, "sched_renderer", None)
        route = self.routes[-1]
        if cell is not None and isinstance(route, APIRoute):
            render = _renderer(route)
            if render is not None:
                cell.append(render)


def _run_hook(hook: Callable[[], object]) -> None:
    try:
        hook()
    except Exception:  # the change is committed: report it, do not fail the request
        log.exception("a post-commit step failed (the outbox sweeper retries hand-overs)")


def after_commit(session: Session, hook: Callable[[], object]) -> None:
    """Run ``hook`` once this request's transaction has committed: waking the
    scheduler, handing new runs to the broker (never before they are visible)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(hook)


DbSession = Annotated[Session, Depends(get_session, scope="function")]

bearer = HTTPBearer(
    auto_error=False,
    description="An API key (scheduler_...) or a token from POST /api/tokens.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def authenticate(
    session: Session,
    state: ApiState,
    credentials: HTTPAuthorizationCredentials | None,
    address: str = "-",
) -> Principal:
    """The caller, or Unauthorized; a wrong credential counts against its address and
    key prefix, and past ``api.auth_failures_per_minute`` the answer is 429."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized("missing credentials: send Authorization: Bearer <API key or token>")
    credential = credentials.credentials
    authlimit.check(state.auth_failures, address, credential)
    try:
        return auth.authenticate(session, state.jwt_secret, credential)
    except Unauthorized as exc:
        authlimit.failed(state.auth_failures, address, credential, exc)
        raise


class RequireScope:
    """A dependency that authenticates the caller and checks one scope (None: any)."""

    def __init__(self, scope: str | None) -> None:
        self.scope = scope

    def __call__(
        self, request: Request, state: State, session: DbSession, credentials: Credentials
    ) -> Principal:
        address = request.client.host if request.client else "-"
        principal = authenticate(session, state, credentials, address)
        request.state.principal = principal
        if self.scope is not None and not principal.has(self.scope):
            raise Forbidden(f"this operation needs the scope {self.scope}")
        return principal

    def __repr__(self) -> str:
        return f"RequireScope({self.scope!r})"


def require(scope: str | None) -> RequireScope:
    return RequireScope(scope)


Authenticated = Annotated[Principal, Depends(require(None))]
TaskReader = Annotated[Principal, Depends(require("task.read"))]
TaskWriter = Annotated[Principal, Depends(require("task.write"))]
TaskExecutor = Annotated[Principal, Depends(require("task.execute"))]
TaskDeleter = Annotated[Principal, Depends(require("task.delete"))]
WorkerReader = Annotated[Principal, Depends(require("worker.read"))]
WorkerWriter = Annotated[Principal, Depends(require("worker.write"))]
SystemReader = Annotated[Principal, Depends(require("system.read"))]
SystemWriter = Annotated[Principal, Depends(require("system.write"))]


def metrics_guard(request: Request, state: State, credentials: Credentials) -> None:
    """/metrics is open unless ``observability.metrics_auth``; then it needs system.read."""
    if state.settings.observability.metrics_auth:
        with state.db.session() as session:
            RequireScope("system.read")(request, state, session, credentials)
