"""The dashboard's pages (GET): overview, tasks, a task, a run, workers, timeline,
system events and audit. Each reads through the same services as the API and needs
the same scope as the API's read of the same thing."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Path, Query
from fastapi.responses import HTMLResponse, JSONResponse

from schedd import crontext
from schedd.api.deps import DbSession, State
from schedd.api.params import MAX_ID, PageNo, RunId
from schedd.errors import InvalidInput
from schedd.models import TaskStatus
from schedd.schemas import Page
from schedd.services import dashboard, output, runs, system, tasks, workers
from schedd.types import utcnow
from schedd.ui import charts
from schedd.ui.render import page
from schedd.ui.routing import UiRouter
from schedd.ui.viewer import CurrentViewer, Viewer

router = UiRouter(include_in_schema=False, default_response_class=HTMLResponse)

TASKS_PER_PAGE = 50
RUNS_PER_PAGE = 25
ROWS_PER_PAGE = 50
Search = Annotated[str | None, Query(max_length=200)]
Filter = Annotated[str | None, Query(max_length=64)]
TaskId = Annotated[int, Path(ge=1, le=MAX_ID)]
# The message an action leaves for the page it redirects to ("task paused").
Notice = Annotated[str | None, Query(max_length=300)]


def _page(viewer: Viewer, template: str, notice: str | None = None, **context: Any) -> HTMLResponse:
    return page(template, viewer=viewer, now=utcnow(), notice=notice, **context)


def _blank(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def _list_page(
    viewer: Viewer,
    template: str,
    found: Page[Any],
    size: int,
    filters: dict[str, str | float | None],
    **context: Any,
) -> HTMLResponse:
    """A page of a filtered list: ``found``, how many pages of ``size`` there are, and
    the filters as its form shows them ("" where none is set)."""
    shown: dict[str, Any] = {k: "" if v is None else v for k, v in filters.items()}
    pages = max((found.total + size - 1) // size, 1)
    return _page(viewer, template, found=found, pages=pages, **shown, **context)


@router.get("/ui/", name="ui.overview")
def overview(
    state: State, session: DbSession, viewer: CurrentViewer, notice: Notice = None
) -> HTMLResponse:
    now = utcnow()
    context: dict[str, object] = {}
    if viewer.can("task.read"):
        hours = dashboard.runs_per_hour(session, 24, now)
        context["hours"] = hours
        context["chart"] = charts.hourly(hours)
        context["failing"] = dashboard.failing_tasks(session, now=now)
        context["tasks_by_status"] = system.tasks_by_status(session)
    if viewer.can("worker.read"):
        context["workers_by_status"] = system.workers_by_status(session)
    if viewer.can("system.read") or viewer.can("task.read"):
        context["backlog"] = system.backlog(session.connection(), now)
    if viewer.can("system.read"):
        grace = max(state.settings.scheduler.misfire_grace_seconds, 60.0)
        context["scheduler"] = dashboard.scheduler_health(session, grace, now)
    return _page(viewer, "overview.html", notice, **context)


@router.get("/ui/tasks", name="ui.tasks")
def task_list(
    session: DbSession,
    viewer: CurrentViewer,
    q: Search = None,
    tag: Filter = None,
    status: Filter = None,
    page_no: Annotated[PageNo, Query(alias="page")] = 1,
) -> HTMLResponse:
    viewer.require("task.read")
    q, tag, status = _blank(q), _blank(tag), _blank(status)
    if status is not None and status not in {s.value for s in TaskStatus}:
        raise InvalidInput(f"status: unknown task status {status!r}", field="status")
    found = tasks.list_tasks(
        session, name=q, tag=tag, status=status, page=page_no, size=TASKS_PER_PAGE
    )
    ids = [t.id for t in found.items]
    return _list_page(
        viewer,
        "tasks.html",
        found,
        TASKS_PER_PAGE,
        {"q": q, "tag": tag, "status": status},
        strips=dashboard.recent_outcomes(session, ids),
        tags=dashboard.tags_in_use(session),
    )


@router.get("/ui/tasks/{task_id}", name="ui.task")
def task_page(
    task_id: TaskId,
    session: DbSession,
    viewer: CurrentViewer,
    page_no: Annotated[PageNo, Query(alias="page")] = 1,
    notice: Notice = None,
) -> HTMLResponse:
    viewer.require("task.read")
    task = tasks.get_task(session, task_id)
    now = utcnow()
    words = crontext.describe(task.schedule) if task.schedule else None
    fires = runs.next_fire_times(session, task.id, 10, now=now) if task.schedule else []
    history = dashboard.task_history(session, task.id, page=page_no, size=RUNS_PER_PAGE)
    around = dashboard.neighbours(session, task.id)
    graph = (
        charts.dependency_graph(task.id, around) if around.upstream or around.downstream else None
    )
    return _page(
        viewer,
        "task.html",
        notice,
        task=task,
        words=words,
        fires=fires,
        history=history,
        chart=charts.durations(dashboard.durations(session, task.id), now),
        graph=graph,
        around=around,
    )


@router.get("/ui/runs/{run_id}", name="ui.run")
def run_page(
    run_id: RunId, session: DbSession, viewer: CurrentViewer, notice: Notice = None
) -> HTMLResponse:
    viewer.require("task.read")
    run = runs.get_run(session, run_id)
    task = tasks.get_task(session, run.task_id)
    chain = dashboard.retry_chain(session, run_id)
    attempts = [runs.get_run(session, i) for i in chain] if len(chain) > 1 else []
    text = output.read(session, run_id, 0)
    return _page(viewer, "run.html", notice, run=run, task=task, attempts=attempts, output=text)


@router.get("/ui/runs/{run_id}/output", name="ui.run.output", response_class=JSONResponse)
def run_output(
    run_id: RunId,
    session: DbSession,
    viewer: CurrentViewer,
    offset: Annotated[int, Query(ge=0, le=2**53)] = 0,
) -> JSONResponse:
    """The output after ``offset`` and the run's status, for the page's live view."""
    viewer.require("task.read")
    part = output.read(session, run_id, offset)
    status = runs.get_run(session, run_id).status
    return JSONResponse(
        {
            "data": part.text,
            "next_offset": part.next_offset,
            "finished": part.finished,
            "status": status,
        }
    )


@router.get("/ui/workers", name="ui.workers")
def worker_list(session: DbSession, viewer: CurrentViewer, notice: Notice = None) -> HTMLResponse:
    viewer.require("worker.read")
    found = workers.list_workers(session, page=1, size=500)
    running: dict[str, list[int]] = {}
    if viewer.can("task.read"):
        running = dashboard.running_runs(session, [w.id for w in found.items])
    return _page(viewer, "workers.html", notice, found=found, running=running)


@router.get("/ui/timeline", name="ui.timeline")
def timeline_page(
    session: DbSession,
    viewer: CurrentViewer,
    hours: Annotated[float, Query(gt=0, le=168)] = 6,
) -> HTMLResponse:
    viewer.require("task.read")
    now = utcnow()
    found = dashboard.timeline(session, hours, now)
    return _page(
        viewer,
        "timeline.html",
        chart=charts.timeline(found, now, hours),
        hours=hours,
        count=len(found),
        limit=dashboard.MAX_TIMELINE_RUNS,
    )


def _since(hours: float | None) -> datetime | None:
    return utcnow() - timedelta(hours=hours) if hours else None


@router.get("/ui/events", name="ui.events")
def events_page(
    session: DbSession,
    viewer: CurrentViewer,
    level: Filter = None,
    component: Filter = None,
    hours: Annotated[float | None, Query(gt=0, le=24 * 366)] = None,
    page_no: Annotated[PageNo, Query(alias="page")] = 1,
) -> HTMLResponse:
    viewer.require("system.read")
    level, component = _blank(level), _blank(component)
    found = system.list_logs(
        session,
        level=level,
        component=component,
        start_time=_since(hours),
        page=page_no,
        size=ROWS_PER_PAGE,
    )
    filters = {"level": level, "component": component, "hours": hours}
    return _list_page(viewer, "events.html", found, ROWS_PER_PAGE, filters)


@router.get("/ui/audit", name="ui.audit")
def audit_page(
    session: DbSession,
    viewer: CurrentViewer,
    actor: Search = None,
    action: Filter = None,
    outcome: Filter = None,
    hours: Annotated[float | None, Query(gt=0, le=24 * 366)] = None,
    page_no: Annotated[PageNo, Query(alias="page")] = 1,
) -> HTMLResponse:
    viewer.require("system.read")
    actor, action, outcome = _blank(actor), _blank(action), _blank(outcome)
    found = system.list_audit(
        session,
        actor=actor,
        action=action,
        outcome=outcome,
        start_time=_since(hours),
        page=page_no,
        size=ROWS_PER_PAGE,
    )
    filters = {"actor": actor, "action": action, "outcome": outcome, "hours": hours}
    return _list_page(viewer, "audit.html", found, ROWS_PER_PAGE, filters)
