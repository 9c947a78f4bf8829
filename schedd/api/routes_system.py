"""/health, /metrics, /api/system/stats, /api/system/logs, /api/audit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from schedd.api.deps import DbSession, Router, State, SystemReader, metrics_guard
from schedd.api.errors import ERROR_RESPONSES
from schedd.api.health import check_health
from schedd.api.params import After, Before, PageNo, PageSize
from schedd.errors import NotFound
from schedd.metrics import exposition
from schedd.schemas import AuditRead, HealthRead, Page, StatsRead, SystemLogRead
from schedd.services import system
from schedd.textrules import LEVEL_PATTERN

router = Router(tags=["system"], responses=ERROR_RESPONSES)


@router.get(
    "/health",
    name="system.health",
    responses={503: {"model": HealthRead, "description": "database unreachable"}},
)
def health(state: State) -> JSONResponse:
    """Open. 200 when the database answers (status ``degraded`` if the broker does
    not), 503 when it does not."""
    report = check_health(state)
    code = 503 if report.status == "unavailable" else 200
    return JSONResponse(report.model_dump(), status_code=code)


@router.get(
    "/metrics",
    name="system.metrics",
    response_class=Response,
    dependencies=[Depends(metrics_guard)],
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(state: State) -> Response:
    """Prometheus metrics; open unless observability.metrics_auth (then system.read)."""
    if not state.settings.observability.metrics_enabled:
        raise NotFound("metrics are disabled (observability.metrics_enabled)")
    return Response(exposition(state.metrics_registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/system/stats", name="system.stats")
def stats(state: State, session: DbSession, _: SystemReader) -> StatsRead:
    return system.stats(session, started_at=state.started_at)


@router.get("/api/system/logs", name="system.logs")
def logs(
    session: DbSession,
    _: SystemReader,
    page: PageNo = 1,
    size: PageSize = 50,
    level: Annotated[
        str | None,
        Query(
            max_length=16,
            description="At or above: debug, info, warning, error or critical (any case).",
            json_schema_extra={"pattern": LEVEL_PATTERN},
        ),
    ] = None,
    component: Annotated[str | None, Query(max_length=64)] = None,
    start_time: After = None,
    end_time: Before = None,
) -> Page[SystemLogRead]:
    return system.list_logs(
        session,
        level=level,
        component=component,
        start_time=start_time,
        end_time=end_time,
        page=page,
        size=size,
    )


@router.get("/api/audit", name="system.audit")
def audit_log(
    session: DbSession,
    _: SystemReader,
    page: PageNo = 1,
    size: PageSize = 50,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    target: Annotated[str | None, Query(max_length=200)] = None,
    outcome: Annotated[str | None, Query(max_length=32)] = None,
    start_time: After = None,
    end_time: Before = None,
) -> Page[AuditRead]:
    return system.list_audit(
        session,
        actor=actor,
        action=action,
        target=target,
        outcome=outcome,
        start_time=start_time,
        end_time=end_time,
        page=page,
        size=size,
    )
