"""Notification rules: which events of a task are sent to which channels.

A task's ``notify`` field and the configuration's ``notify.default`` have the same
shape: event names mapped to channel names, and three options the silence rules need::

    {"failed": ["ops-mail"], "recovered": ["chat"], "absent": ["ops-mail"],
     "expect_every": "25h", "grace": "30m", "warn_after_seconds": 600}

A key the task sets (an empty list included, which turns an event off) wins over the
default's; anything the task leaves out comes from the default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

EVENTS = ("failed", "recovered", "succeeded", "missed", "long_running", "absent")
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
MAX_DURATION = 366 * 86_400.0


def duration_seconds(value: str | float | int) -> float:
    """Seconds from a number or a text like ``90s``, ``30m``, ``25h``, ``7d``, ``2w``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '30m' or '25h'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"not a duration: {value!r} (expected e.g. '90s', '30m', '25h', '7d')")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not 1 <= seconds <= MAX_DURATION:
        raise ValueError(f"must be between 1 second and 366 days, got {value!r}")
    return seconds


def _channels(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    for name in value:
        if not CHANNEL_NAME.match(name):
            raise ValueError(f"{name!r} is not a channel name")
    return list(dict.fromkeys(value))


class Rules(BaseModel):
    """One set of rules (a task's ``notify`` or ``notify.default``)."""

    model_config = ConfigDict(extra="forbid")

    failed: list[str] | None = Field(default=None, max_length=20)
    recovered: list[str] | None = Field(default=None, max_length=20)
    succeeded: list[str] | None = Field(default=None, max_length=20)
    missed: list[str] | None = Field(default=None, max_length=20)
    long_running: list[str] | None = Field(default=None, max_length=20)
    absent: list[str] | None = Field(default=None, max_length=20)
    warn_after_seconds: float | None = Field(default=None, ge=1, le=MAX_DURATION)
    expect_every: str | float | None = None
    grace: str | float | None = None

    @field_validator(*EVENTS)
    @classmethod
    def _check_channels(cls, value: list[str] | None) -> list[str] | None:
        return _channels(value)

    @field_validator("expect_every", "grace")
    @classmethod
    def _duration(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            duration_seconds(value)
        return value

    def channels(self, event: str) -> list[str]:
        return list(getattr(self, event) or [])

    def channel_names(self) -> set[str]:
        return {name for event in EVENTS for name in self.channels(event)}

    @property
    def expect_every_seconds(self) -> float | None:
        return None if self.expect_every is None else duration_seconds(self.expect_every)

    @property
    def grace_seconds(self) -> float | None:
        return None if self.grace is None else duration_seconds(self.grace)

    def stored(self) -> dict[str, Any]:
        """The rules as a task stores them (keys left out are not set)."""
        return self.model_dump(exclude_none=True)


def parse_rules(value: Mapping[str, Any] | None) -> Rules:
    """``value`` as Rules; ValueError naming the first bad key."""
    try:
        return Rules.model_validate(dict(value or {}))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown key (expected {', '.join(EVENTS)}, warn_after_seconds, "
            message += "expect_every or grace)"
        raise ValueError(f"{where}: {message}" if where else message) from None


def effective(task_rules: Mapping[str, Any] | None, default: Rules) -> Rules:
    """The task's rules over the default's, key by key."""
    merged = default.stored()
    merged.update({k: v for k, v in (task_rules or {}).items() if v is not None})
    return Rules.model_validate(merged)
