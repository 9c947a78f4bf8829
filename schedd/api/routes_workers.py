"""/api/workers: list, show, heartbeat, drain, remove.

A heartbeat for an unknown worker id is 404: workers register when they start (the
worker role), and a removed worker must register again rather than reappear through
a heartbeat.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, Response

from schedd.api.deps import DbSession, Router, WorkerReader, WorkerWriter
from schedd.api.errors import ERROR_RESPONSES
from schedd.api.params import PageNo, PageSize, WorkerId
from schedd.metrics import HEARTBEATS
from schedd.models import WorkerStatus
from schedd.schemas import HeartbeatIn, Page, WorkerRead
from schedd.services import workers

router = Router(tags=["workers"], responses=ERROR_RESPONSES)


@router.get("/api/workers", name="worker.list")
def list_workers(
    session: DbSession,
    _: WorkerReader,
    page: PageNo = 1,
    size: PageSize = 50,
    status: WorkerStatus | None = None,
) -> Page[WorkerRead]:
    return workers.list_workers(session, status=status, page=page, size=size)


@router.get("/api/workers/{worker_id}", name="worker.get")
def get_worker(worker_id: WorkerId, session: DbSession, _: WorkerReader) -> WorkerRead:
    return workers.get_worker(session, worker_id)


@router.post("/api/workers/{worker_id}/heartbeat", name="worker.heartbeat")
def heartbeat(
    worker_id: WorkerId,
    session: DbSession,
    _: WorkerWriter,
    body: Annotated[HeartbeatIn | None, Body()] = None,
) -> WorkerRead:
    worker = workers.heartbeat(session, worker_id, body or HeartbeatIn())
    HEARTBEATS.labels("api").inc()
    return worker


@router.post("/api/workers/{worker_id}/drain", name="worker.drain")
def drain_worker(worker_id: WorkerId, session: DbSession, caller: WorkerWriter) -> WorkerRead:
    return workers.drain_worker(session, worker_id, actor=caller.actor)


@router.delete(
    "/api/workers/{worker_id}", status_code=204, response_class=Response, name="worker.remove"
)
def remove_worker(worker_id: WorkerId, session: DbSession, caller: WorkerWriter) -> None:
    workers.remove_worker(session, worker_id, actor=caller.actor)
