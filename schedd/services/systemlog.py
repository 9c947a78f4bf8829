"""System events: log records of the ``schedd`` loggers stored for /api/system/logs.

:class:`SystemLogHandler` is a logging handler that only queues records (logging must
never wait for the database); a background thread writes them in batches and, every
Retention (deleting old events) is the scheduler role's job:
:mod:`schedd.scheduler.retention`.

Each stored event has a ``component`` (the part of ``schedd.<component>.…`` in its
logger name) and ``refs``: the ``task_id``, ``run_id`` and ``worker_id`` given as
``extra`` to the log call.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from schedd.db import Database
from schedd.errors import first_line
from schedd.models import SystemLog
from schedd.redact import redact_text

log = logging.getLogger("schedd.systemlog")

ROOT_LOGGER = "schedd"
REF_KEYS = ("task_id", "run_id", "worker_id")
MAX_MESSAGE = 4000
BATCH_SIZE = 200
FLUSH_INTERVAL = 1.0
QUEUE_LIMIT = 10_000


def component_of(logger_name: str) -> str:
    """``schedd.scheduler.fire`` -> ``scheduler``; ``schedd`` -> ``daemon``."""
    parts = logger_name.split(".")
    if parts[0] == ROOT_LOGGER and len(parts) > 1:
        return parts[1][:64]
    return "daemon" if logger_name == ROOT_LOGGER else logger_name[:64]


def event_of(record: logging.LogRecord) -> dict[str, Any]:
    """The system_logs row for a record (message cut to MAX_MESSAGE characters)."""
    message = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        message += f" ({type(exc).__name__}: {exc})"
    message = redact_text(message)
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    refs = {}
    for key in REF_KEYS:
        value = record.__dict__.get(key)
        if isinstance(value, str | int):
            refs[key] = value
    return {
        "time": datetime.fromtimestamp(record.created, UTC),
        "level": record.levelname.lower(),
        "levelno": record.levelno,
        "component": component_of(record.name),
        "message": message,
        "refs": refs,
    }


class SystemLogHandler(logging.Handler):
    """Queues records for :class:`SystemLogWriter`; drops (and counts) on overflow."""

    def __init__(self, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue(QUEUE_LIMIT)
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == log.name:
            return  # the writer's own complaints would feed back into it
        try:
            self.queue.put_nowait(event_of(record))
        except queue.Full:
            self.dropped += 1


class SystemLogWriter:
    """Owns the handler and the thread that stores its records."""

    def __init__(
        self,
        db: Database,
        *,
        level: int = logging.WARNING,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        self.db = db
        self.handler = SystemLogHandler(level)
        self.flush_interval = flush_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="systemlog", daemon=True)

    def start(self) -> None:
        logging.getLogger(ROOT_LOGGER).addHandler(self.handler)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Detach the handler, write what is queued, stop the thread."""
        logging.getLogger(ROOT_LOGGER).removeHandler(self.handler)
        self._stop.set()
        self._thread.join(timeout)

    def flush(self) -> int:
        """Write every queued event now; the number written."""
        written = 0
        while True:
            batch: list[dict[str, Any]] = []
            while len(batch) < BATCH_SIZE:
                try:
                    batch.append(self.handler.queue.get_nowait())
                except queue.Empty:
                    break
            if not batch:
                return written
            with self.db.session() as session:
                session.execute(sa.insert(SystemLog.__table__), batch)  # type: ignore[attr-defined]
            written += len(batch)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self._cycle()
        self._cycle()

    def _cycle(self) -> None:
        try:
            self.flush()
            if self.handler.dropped:
                dropped, self.handler.dropped = self.handler.dropped, 0
                log.warning("system log queue full: %d event(s) not stored", dropped)
        except sa.exc.SQLAlchemyError as exc:
            # The batch is lost, not the process: events are a convenience, the
            # process log (stderr) keeps every record anyway.
            log.warning("could not store system events: %s", first_line(exc))
