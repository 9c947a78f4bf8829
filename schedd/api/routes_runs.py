"""/api/runs: list (by status, task, worker), show, output, cancel, retry."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import Query

from schedd.api.deps import DbSession, Router, State, TaskExecutor, TaskReader, after_commit
from schedd.api.errors import ERROR_RESPONSES
from schedd.api.params import IsoDateTime, PageNo, PageSize, RunId
from schedd.models import RunStatus
from schedd.schemas import OutputRead, Page, RunRead
from schedd.services import output, runs

router = Router(tags=["runs"], responses=ERROR_RESPONSES)

# Stored offsets are 32-bit integers (and output is capped far below that).
MAX_OFFSET = 2**31 - 1


@router.get("/api/runs", name="run.list")
def list_runs(
    session: DbSession,
    _: TaskReader,
    page: PageNo = 1,
    size: PageSize = 50,
    status: RunStatus | None = None,
    task: Annotated[str | None, Query(max_length=200, description="Task id or name.")] = None,
    worker: Annotated[str | None, Query(max_length=200, description="Worker id.")] = None,
    since: Annotated[IsoDateTime | None, Query(description="Created at or after.")] = None,
) -> Page[RunRead]:
    return runs.list_runs(
        session, status=status, task=task, worker=worker, since=since, page=page, size=size
    )


@router.get("/api/runs/{run_id}", name="run.get")
def get_run(run_id: RunId, session: DbSession, _: TaskReader) -> RunRead:
    return runs.get_run(session, run_id)


@router.get("/api/runs/{run_id}/output", name="run.output")
def run_output(
    run_id: RunId,
    session: DbSession,
    _: TaskReader,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Byte offset.")] = 0,
    limit: Annotated[int, Query(ge=1, le=output.DEFAULT_READ_LIMIT)] = output.DEFAULT_READ_LIMIT,
) -> OutputRead:
    part = output.read(session, run_id, offset, limit=limit)
    return OutputRead(
        data=part.text, offset=offset, next_offset=part.next_offset, finished=part.finished
    )


@router.post("/api/runs/{run_id}/cancel", name="run.cancel")
def cancel_run(run_id: RunId, session: DbSession, caller: TaskExecutor) -> RunRead:
    return runs.cancel_run(session, run_id, actor=caller.actor)


@router.post("/api/runs/{run_id}/retry", status_code=202, name="run.retry")
def retry_run(
    run_id: RunId,
    state: State,
    session: DbSession,
    caller: TaskExecutor,
) -> RunRead:
    """Run an ended run again as a new pending run, handed to the broker once committed."""
    run = runs.retry_run(session, run_id, actor=caller.actor)
    after_commit(session, partial(runs.dispatch, state.db, state.broker, [runs.message_of(run)]))
    return run
