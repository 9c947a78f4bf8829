"""The dashboard's router and its error pages.

:class:`UiRouter` runs sync routes like the API's :class:`~schedd.api.deps.Router`
(route, render and commit in one worker thread) but accepts any query parameter: a
browser's address bar is not a client to be strict with. :func:`install_errors`
answers errors under ``/ui/`` with a page (or a redirect to sign in) instead of the
API's JSON, and records a refused action in the audit log as the API does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from schedd.api import errors
from schedd.api.deps import in_worker_thread
from schedd.errors import Forbidden, InvalidInput, SchedError
from schedd.ui import security
from schedd.ui.render import page
from schedd.ui.viewer import SignInRequired, signin_location

Handler = Callable[[Request, Exception], Awaitable[Response]]


class UiRouter(APIRouter):
    def add_api_route(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().add_api_route(path, in_worker_thread(endpoint), **options)


def _is_ui(request: Request) -> bool:
    path = request.url.path
    return path == "/ui" or path.startswith("/ui/")


def error_page(request: Request, status: int, message: str) -> Response:
    signed_in = getattr(request.state, "principal", None) is not None
    response = page(
        "error.html", status_code=status, status=status, message=message, signed_in=signed_in
    )
    if status == 429 and isinstance(getattr(request.state, "retry_after", None), int):
        response.headers["Retry-After"] = str(request.state.retry_after)
    return response


def install_errors(app: FastAPI) -> None:
    """Route SchedError and validation errors of ``/ui/`` requests to HTML pages."""
    api_sched_error = cast(Handler, app.exception_handlers[SchedError])
    api_validation_error = cast(Handler, app.exception_handlers[RequestValidationError])

    async def sched_error(request: Request, exc: Exception) -> Response:
        if not _is_ui(request):
            return await api_sched_error(request, exc)
        assert isinstance(exc, SchedError)
        if isinstance(exc, SignInRequired):
            response: Response = RedirectResponse(
                signin_location(exc.next_path, exc.message), status_code=303
            )
            security.clear_cookie(request, response, security.SESSION_COOKIE)
            return response
        status = errors.status_of(exc)
        outcome = "denied" if isinstance(exc, Forbidden) else exc.code
        message = exc.message
        if isinstance(exc, InvalidInput) and exc.field and not message.startswith(exc.field):
            message = f"{exc.field}: {message}"
        await run_in_threadpool(errors.audit_failure, request, outcome, message)
        request.state.retry_after = getattr(exc, "retry_after", None)
        return error_page(request, status, message)

    async def validation_error(request: Request, exc: Exception) -> Response:
        if not _is_ui(request):
            return await api_validation_error(request, exc)
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ())[1:]]
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        return error_page(request, 422, f"{'.'.join(loc)}: {message}" if loc else message)

    app.exception_handlers[SchedError] = sched_error
    app.exception_handlers[RequestValidationError] = validation_error
