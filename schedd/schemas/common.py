"""What the schema modules share: the list page and error shapes, JSON number and
date-time checks, and turning a pydantic error into one InvalidInput."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, Field, ValidationError, ValidationInfo

from schedd.errors import InvalidInput

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class Page(BaseModel, Generic[T]):
    """One page of a list: the seed's list shape."""

    items: list[T]
    total: int
    page: int
    size: int


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


def published(**keywords: Any) -> Any:
    """JSON Schema keywords for the OpenAPI document that a validator of the model
    enforces (with a message in words), from the same rule."""
    return Field(json_schema_extra=keywords)


MAX_ID = 2_147_483_647  # ids are 32-bit integers in PostgreSQL


def json_number(value: Any, kind: str = "an integer") -> Any:
    # Pydantic would take true as 1 and "5" as 5: the schema says number.
    if isinstance(value, bool | str | bytes):
        raise ValueError(f"must be {kind} (a JSON number), not {type(value).__name__}")
    return value


INTEGERS = frozenset(
    {"retry_count", "timeout_seconds", "memory_max_mb", "pids_max", "current_task_count"}
    | {"ttl_seconds"}
)
NUMBERS = (
    "retry_count",
    "retry_delay_seconds",
    "timeout_seconds",
    "memory_max_mb",
    "cpu_max",
    "pids_max",
    "current_task_count",
    "load_average",
    "memory_usage",
    "cpu_usage",
    "ttl_seconds",
)


def json_numbers(value: Any, info: ValidationInfo) -> Any:
    """Numbers as JSON Schema has them (3.0 is an integer, true and "3" are no
    numbers), for a field_validator(mode="before") of the NUMBERS of a model."""
    if value is None:
        return None
    return json_number(value, "an integer" if info.field_name in INTEGERS else "a number")


def _iso_datetime(value: Any) -> Any:
    # Pydantic reads a number (or a numeric string) as a Unix time: refuse it, the
    # schema says date-time.
    if isinstance(value, str) and re.match(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        return value
    if isinstance(value, datetime):
        return value
    raise ValueError("expected an ISO 8601 date and time, e.g. 2026-01-31T12:00:00Z")


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_datetime)]


def validated(model: type[M], data: Any) -> M:
    """``model.model_validate(data)``, with errors turned into one InvalidInput.

    The message names the field: ``schedule: cron expression ... out of range``.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_input_from(exc) from None


def invalid_input_from(exc: ValidationError) -> InvalidInput:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    message = message.removeprefix("Value error, ")
    return InvalidInput(f"{field}: {message}" if field else message, field=field)
