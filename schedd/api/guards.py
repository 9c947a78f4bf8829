"""Request guards of the API that are not about one route.

- :class:`HostGuard` (pure ASGI): answers 400 to a ``Host`` the API does not serve
  (``api.allowed_hosts``), so a page that rebinds its own DNS name to 127.0.0.1 cannot
  read the API from the operator's browser; and adds ``X-Content-Type-Options:
  nosniff`` to every response and ``Cache-Control: no-store`` to every ``/api``
  response (they carry task data, new API keys and tokens).
- :func:`reject_unknown_query`: a router dependency that refuses query parameters the
  route does not declare, naming the first (as unknown body fields are refused).
- :func:`allowed_methods`: the methods a path answers to, for a correct ``Allow``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schedd.api import errors
from schedd.errors import InvalidInput

WILDCARD_LISTEN = frozenset({"0.0.0.0", "::", ""})
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff")]
NO_STORE = [(b"cache-control", b"no-store")]


def default_allowed_hosts(listen_host: str) -> list[str]:
    """The API's own names: its listen address, the loopback names and, when it
    listens on every interface, this machine's host names."""
    hosts = [listen_host, "localhost", "127.0.0.1", "::1"]
    if listen_host in WILDCARD_LISTEN:
        hosts += [socket.gethostname(), socket.getfqdn()]
    return hosts


def host_of(header: str) -> str:
    """The host part of a ``Host`` header: without port, brackets or a final dot."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


class HostGuard:
    """See the module docstring. ``allowed`` ``["*"]`` accepts any host."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        names = [name.strip().lower().strip("[]").rstrip(".") for name in allowed]
        self.any_host = "*" in names
        self.allowed = frozenset(names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api_path = scope["path"].startswith("/api/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += SECURITY_HEADERS
                if api_path:
                    headers += NO_STORE
                message["headers"] = headers
            await send(message)

        if not self.any_host:
            host = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
            if host_of(host) not in self.allowed:
                response = errors.error_response(
                    400,
                    "bad_request",
                    f"this API does not serve the host {host_of(host)!r} "
                    "(add it to api.allowed_hosts)",
                )
                await response(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)


_declared: dict[int, frozenset[str]] = {}


def _query_names(route: APIRoute) -> frozenset[str]:
    names = _declared.get(id(route))
    if names is None:
        found: set[str] = set()
        stack: list[Dependant] = [route.dependant]
        while stack:
            dependant = stack.pop()
            found.update(param.alias for param in dependant.query_params)
            stack.extend(dependant.dependencies)
        names = frozenset(found)
        _declared[id(route)] = names
    return names


async def reject_unknown_query(request: Request) -> None:
    """Refuse a query parameter the route does not declare: a misspelt filter
    (``?levle=info``) must not silently return everything."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.scope.get("query_string"):
        return
    declared = _query_names(route)
    for name in request.query_params:
        if name not in declared:
            raise InvalidInput(f"{name}: unknown query parameter", field=name)


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route answers for the path of ``scope`` (for ``Allow``)."""
    methods: set[str] = set()
    probe = {**scope, "type": "http"}
    for route in routes:
        match, _ = route.matches(probe)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)
