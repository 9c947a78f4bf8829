"""Errors as HTTP responses: the one place the error hierarchy meets status codes.

Every error body is ``{"code", "message", "field"}``. A failed mutation by a known
caller is written to the audit log (in its own transaction: the failed one was rolled
back). Unexpected exceptions become ``500 {"code": "internal"}`` with the traceback in
the server's log only.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from schedd.api.authlimit import TooManyFailures, audit_denied
from schedd.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    SchedError,
    Unauthorized,
    Unavailable,
    first_line,
)
from schedd.schemas import ErrorBody
from schedd.services import audit

log = logging.getLogger("schedd.api")

STATUS: dict[type[SchedError], int] = {
    InvalidInput: 422,
    NotFound: 404,
    Conflict: 409,
    Unauthorized: 401,
    Forbidden: 403,
    Unavailable: 503,
    TooManyFailures: 429,
}
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
    503: "unavailable",
}
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Path parameters name the object a request acts on, for the audit log.
TARGET_KINDS = {"ref": "task", "run_id": "run", "worker_id": "worker", "key_id": "apikey"}

# The error responses every route documents (OpenAPI), so clients and schema checks
# know the shape of a 4xx.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": code.replace("_", " ")}
    for status, code in HTTP_CODES.items()
    if status in (400, 401, 403, 404, 409, 422)
}


def status_of(exc: SchedError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def error_response(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = ErrorBody(code=code, message=message, field=field).model_dump()
    return JSONResponse(body, status_code=status, headers=headers)


def audit_failure(request: Request, outcome: str, message: str) -> None:
    """Record a failed mutation by an authenticated caller (anonymous ones are not:
    they would let anyone fill the audit log)."""
    principal = getattr(request.state, "principal", None)
    route = request.scope.get("route")
    if principal is None or request.method not in MUTATING or route is None:
        return
    params = request.path_params
    target = next(
        (f"{kind}:{params[name]}" for name, kind in TARGET_KINDS.items() if name in params), "-"
    )
    try:
        with request.app.state.api.db.session() as session:
            audit.record(
                session,
                principal.actor,
                getattr(route, "name", "") or request.method,
                target[:200],
                outcome=outcome,
                detail={"message": message[:500]},
            )
    except sa.exc.SQLAlchemyError as exc:
        log.warning("could not write the audit entry of a failed request: %s", exc)


async def _sched_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SchedError)
    status = status_of(exc)
    outcome = "denied" if isinstance(exc, Forbidden) else exc.code
    message = exc.message
    if isinstance(exc, InvalidInput) and exc.field and not message.startswith(exc.field):
        message = f"{exc.field}: {message}"  # every validation message names its field
    await run_in_threadpool(audit_failure, request, outcome, message)
    denied = getattr(exc, "denied", None)
    if denied is not None:
        await run_in_threadpool(audit_denied, request.app.state.api.db, denied)
    response = error_response(status, exc.code, message, exc.field)
    if isinstance(exc, TooManyFailures):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _field_of(loc: tuple[Any, ...]) -> str | None:
    # ("body", "schedule") -> "schedule"; ("query", "size") -> "size"
    parts = (
        [str(p) for p in loc[1:]]
        if loc and loc[0] in ("body", "query", "path")
        else list(map(str, loc))
    )
    return ".".join(parts) or None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        message = "request body is not valid JSON"
        await run_in_threadpool(audit_failure, request, "bad_request", message)
        return error_response(400, "bad_request", message)
    field = _field_of(tuple(first.get("loc", ())))
    message = "unknown field" if first.get("type") == "extra_forbidden" else first.get("msg", "")
    message = str(message).removeprefix("Value error, ")
    if field:
        message = f"{field}: {message}"
    await run_in_threadpool(audit_failure, request, "invalid_input", message)
    return error_response(422, "invalid_input", message, field)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and "route" not in request.scope:
        message = f"no such endpoint: {request.url.path}"
    response = error_response(exc.status_code, code, message)
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405:
        # Starlette names only the first route whose path matched; a path served by
        # several routes (GET, PATCH, DELETE /api/tasks/{ref}) answers all of them.
        from schedd.api.guards import allowed_methods

        response.headers["Allow"] = ", ".join(allowed_methods(request.app.routes, request.scope))
    return response


async def _unavailable_database(request: Request, exc: Exception) -> JSONResponse:
    # The pool timed out or the server went away: a condition, not a bug.
    log.warning("database error on %s %s: %s", request.method, request.url.path, first_line(exc))
    return error_response(503, "unavailable", "the database is unavailable; try again")


async def _unstorable(request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value that passed validation: text with a NUL character,
    # a number or date outside what its column holds. The input is at fault.
    log.info("unstorable value on %s %s: %s", request.method, request.url.path, first_line(exc))
    message = (
        "a value cannot be stored: text must not contain NUL characters, and numbers and "
        "dates must be within range"
    )
    await run_in_threadpool(audit_failure, request, "invalid_input", message)
    return error_response(422, "invalid_input", message)


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    await run_in_threadpool(audit_failure, request, "internal", "internal error")
    return error_response(500, "internal", "internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(SchedError, _sched_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(sa.exc.OperationalError, _unavailable_database)
    app.add_exception_handler(sa.exc.TimeoutError, _unavailable_database)
    app.add_exception_handler(sa.exc.DataError, _unstorable)
    app.add_exception_handler(OverflowError, _unstorable)
    app.add_exception_handler(Exception, _internal)
