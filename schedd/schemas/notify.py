"""Notification channels, alert deliveries and a channel test's answer."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ChannelRead(BaseModel):
    """A notification channel as configured; its URL shows scheme and host only."""

    name: str
    type: str
    target: str
    timeout_seconds: float
    secrets: dict[str, bool] = Field(
        default_factory=dict, description="Environment variables it reads, and whether set."
    )


class DeliveryRead(BaseModel):
    """One alert (or digest) for one channel, and how sending it went."""

    id: int
    channel: str
    state: str
    event: str
    event_id: int | None
    task_id: int | None
    task_name: str | None
    run_id: int | None
    subject: str
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
    digest_id: int | None
    digest_count: int


class ChannelTestRead(BaseModel):
    """The answer to a test message: it was delivered (a failure is an error)."""

    channel: str
    delivered: bool
    subject: str
