"""/api/tasks: create, list, show, update, delete, trigger, pause, resume, runs, next.

``{ref}`` is a task id or a task name.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import Body, Path, Query, Response

from schedd.api.deps import (
    DbSession,
    Router,
    State,
    TaskDeleter,
    TaskExecutor,
    TaskReader,
    TaskWriter,
    after_commit,
)
from schedd.api.errors import ERROR_RESPONSES
from schedd.api.params import PageNo, PageSize
from schedd.models import Executor, TaskStatus
from schedd.schemas import (
    FireTimes,
    Page,
    RunRead,
    TaskCreate,
    TaskCreated,
    TaskRead,
    TaskUpdate,
    TriggerIn,
)
from schedd.services import lifecycle, runs, tasks

router = Router(tags=["tasks"], responses=ERROR_RESPONSES)

Ref = Annotated[str, Path(description="Task id or name.", min_length=1, max_length=200)]


@router.post("/api/tasks", status_code=201, name="task.create")
def create_task(
    body: TaskCreate,
    state: State,
    session: DbSession,
    caller: TaskWriter,
) -> TaskCreated:
    """Create a task. Fields a task read back carries (id, created_at, updated_at,
    last_run_at, next_run_at, warnings) are ignored, so a task from GET can be posted
    as a copy under a new name. ``warnings`` lists what may stop it from running."""
    task = tasks.create_task(
        session,
        body,
        default_timezone=state.settings.scheduler.default_timezone,
        actor=caller.actor,
        scopes=caller.scopes,
        worker_directory=state.settings.worker.working_directory,
        channels=state.settings.notify.channels.keys(),
    )
    after_commit(session, state.notify_tasks_changed)
    return task


@router.get("/api/tasks", name="task.list")
def list_tasks(
    session: DbSession,
    _: TaskReader,
    page: PageNo = 1,
    size: PageSize = 50,
    status: TaskStatus | None = None,
    executor: Executor | None = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    name: Annotated[str | None, Query(max_length=200, description="Substring.")] = None,
) -> Page[TaskRead]:
    return tasks.list_tasks(
        session, status=status, executor=executor, tag=tag, name=name, page=page, size=size
    )


@router.get("/api/tasks/{ref}", name="task.get")
def get_task(ref: Ref, session: DbSession, _: TaskReader) -> TaskRead:
    return tasks.get_task(session, ref)


@router.patch("/api/tasks/{ref}", name="task.update")
def update_task(
    ref: Ref,
    body: TaskUpdate,
    state: State,
    session: DbSession,
    caller: TaskWriter,
) -> TaskRead:
    task = tasks.update_task(
        session,
        ref,
        body,
        actor=caller.actor,
        scopes=caller.scopes,
        channels=state.settings.notify.channels.keys(),
    )
    after_commit(session, state.notify_tasks_changed)
    return task


@router.delete("/api/tasks/{ref}", status_code=204, response_class=Response, name="task.delete")
def delete_task(
    ref: Ref,
    state: State,
    session: DbSession,
    caller: TaskDeleter,
    force: Annotated[bool, Query(description="Delete even if other tasks depend on it.")] = False,
) -> None:
    tasks.delete_task(session, ref, force=force, actor=caller.actor)
    after_commit(session, state.notify_tasks_changed)


@router.post("/api/tasks/{ref}/trigger", status_code=202, name="task.trigger")
def trigger_task(
    ref: Ref,
    state: State,
    session: DbSession,
    caller: TaskExecutor,
    body: Annotated[TriggerIn | None, Body()] = None,
) -> RunRead:
    """Create a pending run now; it is handed to the broker once committed."""
    arguments = body.arguments if body is not None else None
    run = lifecycle.trigger_task(
        session,
        ref,
        arguments=arguments,
        actor=caller.actor,
        handing_over=state.broker is not None,
    )
    message = [runs.message_of(run)]
    after_commit(session, partial(runs.dispatch, state.db, state.broker, message, stamped=True))
    return run


@router.post("/api/tasks/{ref}/pause", name="task.pause")
def pause_task(
    ref: Ref,
    state: State,
    session: DbSession,
    caller: TaskExecutor,
) -> TaskRead:
    task = lifecycle.pause_task(session, ref, actor=caller.actor)
    after_commit(session, state.notify_tasks_changed)
    return task


@router.post("/api/tasks/{ref}/resume", name="task.resume")
def resume_task(
    ref: Ref,
    state: State,
    session: DbSession,
    caller: TaskExecutor,
) -> TaskRead:
    task = lifecycle.resume_task(session, ref, actor=caller.actor)
    after_commit(session, state.notify_tasks_changed)
    return task


@router.get("/api/tasks/{ref}/runs", name="task.runs")
def task_runs(
    ref: Ref, session: DbSession, _: TaskReader, page: PageNo = 1, size: PageSize = 50
) -> Page[RunRead]:
    return runs.task_runs(session, ref, page=page, size=size)


@router.get("/api/tasks/{ref}/next", name="task.next")
def next_fire_times(
    ref: Ref,
    session: DbSession,
    _: TaskReader,
    count: Annotated[int, Query(ge=1, le=runs.MAX_FIRE_PREVIEW)] = 5,
) -> FireTimes:
    return FireTimes(times=runs.next_fire_times(session, ref, count))
