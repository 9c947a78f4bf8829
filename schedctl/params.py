"""Parsing command-line values that are data: times, durations, JSON objects.

A malformed value here is invalid input (exit 65), like the same value refused by the
server, so the exit code does not depend on where it was caught.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from schedd.errors import InvalidInput

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")


def moment(text: str | None, flag: str, *, now: datetime | None = None) -> str | None:
    """An ISO-8601 time (a time without offset is UTC) or an age like ``30m``, ``2h``,
    ``1d`` (that long ago); returned as ISO-8601 UTC with ``Z`` for the API."""
    if text is None:
        return None
    text = text.strip()
    match = _AGO.match(text)
    if match:
        value = float(match.group(1)) * _UNITS[match.group(2)]
        when = (now or datetime.now(UTC)) - timedelta(seconds=value)
    else:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(
                f"{flag}: expected an ISO-8601 time (2025-01-31T08:00:00Z) or an age "
                f"(30s, 15m, 2h, 1d, 1w), got {text!r}",
                field=flag,
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def json_object(text: str | None, flag: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{flag}: not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(value, dict):
        raise InvalidInput(f'{flag}: expected a JSON object like \'{{"owner": "ops"}}\'')
    return value
