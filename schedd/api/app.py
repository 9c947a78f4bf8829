"""The HTTP API application: ``create_app()`` builds it for the api role and the tests."""

from __future__ import annotations

import threading
from time import perf_counter

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schedd import __version__
from schedd.api import (
    authlimit,
    docs,
    errors,
    guards,
    openapi,
    routes_auth,
    routes_notify,
    routes_runs,
    routes_system,
    routes_tasks,
    routes_workers,
)
from schedd.api.deps import ApiState
from schedd.brokers.base import Broker
from schedd.config import Settings
from schedd.db import Database
from schedd.errors import ConfigError
from schedd.metrics import API_REQUEST_DURATION, database_registry

MAX_BODY_BYTES = 1_048_576
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

DESCRIPTION = """\
The sched HTTP API. Authenticate with `Authorization: Bearer <API key or token>`;
each operation names the scope it needs. Errors are `{"code", "message", "field"}`.
"""


class RequestGuard:
    """Times every request by route template, never the raw path (ids would explode
    the label set; requests that match no route count as ``unmatched``), and refuses
    a declared body over MAX_BODY_BYTES with a JSON 413 before reading it (FastAPI's
    own limit, which also covers chunked bodies, stays behind it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if _declared_length(scope) > MAX_BODY_BYTES:
                response = errors.error_response(
                    413, "too_large", f"request body over {MAX_BODY_BYTES} bytes"
                )
                await response(scope, receive, send_and_note)
            else:
                await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            API_REQUEST_DURATION.labels(method, route, str(status)).observe(perf_counter() - start)


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Every API route of ``app`` (included routers flattened), for tests and tools."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            found.append(route)
    return found


def create_app(
    settings: Settings,
    db: Database,
    broker: Broker | None = None,
    tasks_changed: threading.Event | None = None,
) -> FastAPI:
    """The API over ``db``. ``settings.auth.jwt_secret`` must be set (the api role
    fills it in from the data directory on the embedded default); ``broker`` receives
    runs created by trigger and retry; ``tasks_changed`` is set when tasks change."""
    secret = settings.auth.jwt_secret
    if secret is None:
        raise ConfigError(
            settings.source or "configuration", "auth.jwt_secret", "required by the API"
        )
    app = FastAPI(
        title="sched",
        version=__version__,
        description=DESCRIPTION,
        max_body_size=MAX_BODY_BYTES,
        # FastAPI's pages load their scripts from a CDN; docs.install serves them here.
        docs_url=None,
        redoc_url=None,
    )
    app.state.api = ApiState(
        settings=settings,
        db=db,
        broker=broker,
        tasks_changed=tasks_changed,
        jwt_secret=secret.get_secret_value(),
        metrics_registry=database_registry(db),
        # SQLite has one writer at a time (every transaction takes the write lock), so
        # requests take turns; PostgreSQL gets as many as the pool has connections.
        db_slots=anyio.Semaphore(1 if db.is_sqlite else settings.database.max_connections),
        # Each API process keeps its own buckets: with several, each allows its share,
        # so a client spreading its guesses over them gets no more than one would allow.
        auth_failures=authlimit.FailureLimiter(
            -(-settings.api.auth_failures_per_minute // settings.api.processes)
        ),
    )
    errors.install(app)
    docs.install(app)
    openapi.install(app, settings)
    for module in (
        routes_system,
        routes_tasks,
        routes_runs,
        routes_workers,
        routes_auth,
        routes_notify,
    ):
        # Added as the app's own routes: an included router is matched through an extra
        # layer that costs about a third of a trivial request.
        app.router.routes.extend(module.router.routes)
    if settings.api.ui_enabled:
        from schedd import ui  # Jinja2 and the templates load only when served

        ui.install(app)
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(RequestGuard)
    allowed_hosts = settings.api.allowed_hosts
    if allowed_hosts is None:
        allowed_hosts = guards.default_allowed_hosts(settings.api.host)
    app.add_middleware(guards.HostGuard, allowed=allowed_hosts)
    return app
