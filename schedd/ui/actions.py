"""The dashboard's forms (POST): sign in, sign out, trigger, pause, resume, cancel,
re-run, drain. Each checks the form's CSRF token and origin, then calls the same
service as the API's route for the same action, with the same scope, and answers
with a redirect to the page that shows the result (post/redirect/get)."""

from __future__ import annotations

from functools import partial
from typing import Annotated
from urllib.parse import quote

from fastapi import Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from schedd.api.deps import DbSession, State, after_commit, authenticate
from schedd.api.params import MAX_ID, RunId, WorkerId
from schedd.errors import InvalidInput
from schedd.services import auth, lifecycle, runs, workers
from schedd.types import utcnow
from schedd.ui import security
from schedd.ui.render import STATIC, page
from schedd.ui.routing import UiRouter
from schedd.ui.viewer import ActingViewer, Form

router = UiRouter(include_in_schema=False, default_response_class=HTMLResponse)

TaskId = Annotated[int, Path(ge=1, le=MAX_ID)]
MAX_ARGUMENT_TEXT = 65_536


def _back(location: str, notice: str) -> RedirectResponse:
    separator = "&" if "?" in location else "?"
    return RedirectResponse(f"{location}{separator}notice={quote(notice)}", status_code=303)


@router.get("/ui", name="ui.root")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=308)


@router.get("/ui/signin", name="ui.signin.form")
def signin_form(
    request: Request,
    state: State,
    next_path: Annotated[str | None, Query(alias="next", max_length=2000)] = None,
    reason: Annotated[str | None, Query(max_length=300)] = None,
) -> HTMLResponse:
    nonce = security.new_signin_nonce()
    response = page(
        "signin.html",
        csrf=security.signin_csrf(state.jwt_secret, nonce),
        next_path=security.safe_next(next_path),
        reason=reason,
        error=None,
    )
    security.set_cookie(request, response, security.SIGNIN_COOKIE, nonce, security.SIGNIN_SECONDS)
    return response


@router.post("/ui/signin", name="ui.signin")
def signin(request: Request, state: State, session: DbSession, form: Form) -> Response:
    """Exchange an API key for a session token in an HttpOnly cookie."""
    security.check_origin(request)
    nonce = request.cookies.get(security.SIGNIN_COOKIE)
    expected = security.signin_csrf(state.jwt_secret, nonce) if nonce else None
    security.check_csrf(expected, form.get(security.CSRF_FIELD))
    key = form.get("api_key", "").strip()
    next_path = security.safe_next(form.get("next"))
    if not auth.looks_like_key(key):
        raise InvalidInput("api_key: enter an API key (it starts with scheduler_)", field="api_key")
    address = request.client.host if request.client else "-"
    credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=key)
    principal = authenticate(session, state, credentials, address)
    ttl = min(security.SESSION_SECONDS, state.settings.auth.token_ttl_seconds)
    token = auth.issue_token(
        session,
        state.jwt_secret,
        principal,
        scopes=None,
        ttl_seconds=ttl,
        max_ttl_seconds=ttl,
    )
    response = RedirectResponse(next_path, status_code=303)
    seconds = max(int((token.expires_at - utcnow()).total_seconds()), 1)
    security.set_cookie(request, response, security.SESSION_COOKIE, token.token, seconds)
    security.clear_cookie(request, response, security.SIGNIN_COOKIE)
    return response


@router.post("/ui/signout", name="ui.signout")
def signout(request: Request, viewer: ActingViewer) -> RedirectResponse:
    response = RedirectResponse("/ui/signin?reason=" + quote("signed out"), status_code=303)
    security.clear_cookie(request, response, security.SESSION_COOKIE)
    return response


def _arguments(form: dict[str, str]) -> list[str] | None:
    """The trigger form's arguments: one per line; the task's own when left empty and
    ``use_task_arguments`` is checked (the default)."""
    text = form.get("arguments", "")
    if len(text) > MAX_ARGUMENT_TEXT:
        raise InvalidInput(f"arguments: at most {MAX_ARGUMENT_TEXT} characters", field="arguments")
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines and form.get("override") != "on":
        return None
    return lines


@router.post("/ui/tasks/{task_id}/trigger", name="ui.task.trigger")
def trigger(
    task_id: TaskId, state: State, session: DbSession, viewer: ActingViewer, form: Form
) -> RedirectResponse:
    viewer.require("task.execute")
    run = lifecycle.trigger_task(
        session,
        task_id,
        arguments=_arguments(form),
        actor=viewer.principal.actor,
        handing_over=state.broker is not None,
    )
    message = [runs.message_of(run)]
    after_commit(session, partial(runs.dispatch, state.db, state.broker, message, stamped=True))
    return _back(f"/ui/runs/{run.id}", f"run {run.id} created")


@router.post("/ui/tasks/{task_id}/pause", name="ui.task.pause")
def pause(task_id: TaskId, state: State, session: DbSession, viewer: ActingViewer) -> Response:
    viewer.require("task.execute")
    lifecycle.pause_task(session, task_id, actor=viewer.principal.actor)
    after_commit(session, state.notify_tasks_changed)
    return _back(f"/ui/tasks/{task_id}", "task paused")


@router.post("/ui/tasks/{task_id}/resume", name="ui.task.resume")
def resume(task_id: TaskId, state: State, session: DbSession, viewer: ActingViewer) -> Response:
    viewer.require("task.execute")
    lifecycle.resume_task(session, task_id, actor=viewer.principal.actor)
    after_commit(session, state.notify_tasks_changed)
    return _back(f"/ui/tasks/{task_id}", "task resumed")


@router.post("/ui/runs/{run_id}/cancel", name="ui.run.cancel")
def cancel(run_id: RunId, session: DbSession, viewer: ActingViewer) -> Response:
    viewer.require("task.execute")
    run = runs.cancel_run(session, run_id, actor=viewer.principal.actor)
    note = "cancelled" if run.status == "cancelled" else "cancel requested"
    return _back(f"/ui/runs/{run_id}", note)


@router.post("/ui/runs/{run_id}/retry", name="ui.run.retry")
def rerun(run_id: RunId, state: State, session: DbSession, viewer: ActingViewer) -> Response:
    viewer.require("task.execute")
    run = runs.retry_run(session, run_id, actor=viewer.principal.actor)
    after_commit(session, partial(runs.dispatch, state.db, state.broker, [runs.message_of(run)]))
    return _back(f"/ui/runs/{run.id}", f"run {run.id} created from run {run_id}")


@router.post("/ui/workers/{worker_id}/drain", name="ui.worker.drain")
def drain(worker_id: WorkerId, session: DbSession, viewer: ActingViewer) -> Response:
    viewer.require("worker.write")
    workers.drain_worker(session, worker_id, actor=viewer.principal.actor)
    return _back("/ui/workers", f"worker {worker_id} is draining")


@router.get("/ui/static/{name}", name="ui.static")
def static(name: Annotated[str, Path(max_length=100)], v: str | None = None) -> Response:
    found = STATIC.get(name)
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    # Versioned URLs never change content; others are checked again after a while.
    cache = "public, max-age=31536000, immutable" if v == found.version else "max-age=300"
    return Response(found.body, media_type=found.media_type, headers={"Cache-Control": cache})
