"""/api/notify: the notification channels, a test message, the deliveries."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path, Query

from schedd.api.deps import DbSession, Router, State, SystemReader, SystemWriter
from schedd.api.errors import ERROR_RESPONSES
from schedd.api.params import PageNo, PageSize
from schedd.schemas import ChannelRead, ChannelTestRead, DeliveryRead, Page
from schedd.services import alerts

router = Router(tags=["notify"], responses=ERROR_RESPONSES)


@router.get("/api/notify/channels", name="notify.channels")
def channels(state: State, _: SystemReader) -> list[ChannelRead]:
    """The configured channels (URLs show scheme and host only)."""
    return alerts.list_channels(state.settings)


@router.post("/api/notify/channels/{name}/test", name="notify.test")
def test_channel(
    name: Annotated[str, Path(max_length=64)], state: State, _: SystemWriter
) -> ChannelTestRead:
    """Send a test message now; 503 with the receiver's error when it fails."""
    return alerts.test_channel(state.settings, name)


@router.get("/api/notify/deliveries", name="notify.deliveries")
def deliveries(
    session: DbSession,
    _: SystemReader,
    page: PageNo = 1,
    size: PageSize = 50,
    task: Annotated[str | None, Query(max_length=200, description="Task id or name.")] = None,
    status: Annotated[
        Literal["pending", "sent", "failed", "digested"] | None,
        Query(description="Deliveries in this state."),
    ] = None,
    channel: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[DeliveryRead]:
    return alerts.list_deliveries(
        session, task=task, state=status, channel=channel, page=page, size=size
    )
