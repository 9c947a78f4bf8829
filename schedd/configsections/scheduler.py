"""``[scheduler]``: firing, dispatch and reaping intervals, limits and the default
time zone."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from schedd.configsections.base import Section


class SchedulerSettings(Section):
    max_workers: int = Field(50, ge=1, le=100_000)
    scheduling_interval: float = Field(5.0, ge=0.05, le=3600)
    task_timeout: int = Field(3600, ge=1, le=604_800)
    misfire_grace_seconds: float = Field(60.0, ge=0, le=604_800)
    max_catchup: int = Field(100, ge=1, le=100_000)
    heartbeat_timeout: Annotated[float, Field(gt=0, le=86_400)] | None = None
    batch_size: int = Field(500, ge=1, le=100_000)
    redispatch_after: float = Field(30.0, gt=0, le=86_400)
    retry_delay_max: float = Field(3600.0, ge=0, le=604_800)
    default_timezone: str = "UTC"
    reap_interval: float = Field(5.0, ge=0.05, le=3600)
    max_clock_skew_seconds: float = Field(2.0, gt=0, le=86_400)

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {name!r} (expected an IANA name like 'Europe/Berlin')"
            ) from None
        return name
