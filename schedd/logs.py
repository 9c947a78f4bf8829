"""Log setup: readable text on a terminal, JSON lines for machines, level directives.

``log_level`` takes directives like ``"info,schedd.scheduler=debug"``: the first bare
level sets the root, each ``logger=level`` sets one logger.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from schedd.redact import redact_text

LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# Record attributes that are not extras. "color_message" is uvicorn's copy of its
# message with ANSI colours, for its own formatter: no use in a JSON line.
_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "color_message",
}


def parse_directives(spec: str) -> tuple[int, dict[str, int]]:
    """(root level, {logger: level}) from a directive string; ValueError when bad."""
    root = logging.INFO
    per_logger: dict[str, int] = {}
    for raw in spec.split(","):
        part = raw.strip()
        if not part:
            continue
        name, _, level = part.rpartition("=")
        if level.lower() not in LEVELS:
            raise ValueError(f"unknown log level {level!r} (expected one of {', '.join(LEVELS)})")
        if name:
            per_logger[name.strip()] = LEVELS[level.lower()]
        else:
            root = LEVELS[level.lower()]
    return root, per_logger


class JsonFormatter(logging.Formatter):
    """One JSON object per line with stable keys: time, level, logger, message, extras."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                data[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            data["exc"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        # Secrets in URLs out of every line, whoever logged them (drivers included).
        return redact_text(super().format(record))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return (
            datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        )


def setup(level_spec: str, fmt: str, stream: TextIO | None = None) -> None:
    """Configure the root logger once for the daemon process."""
    root_level, per_logger = parse_directives(level_spec)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(root_level)
    for name, level in per_logger.items():
        logging.getLogger(name).setLevel(level)
    # Third-party chatter stays at warning unless asked for by name. pika logs each
    # failed connection attempt as several errors; the broker says it once (first
    # failure, then recovery), so pika is quiet below critical unless asked for.
    quiet = {"pika": logging.CRITICAL}
    for noisy in ("pika", "alembic", "uvicorn.access", "httpx", "httpcore"):
        if noisy not in per_logger:
            floor = quiet.get(noisy, logging.WARNING)
            logging.getLogger(noisy).setLevel(max(root_level, floor))
