"""System events: log records of the ``schedd`` loggers stored for /api/system/logs.

:class:`SystemLogHandler` is a logging handler that only queues records (logging must
never wait for the database); a background thread writes them in batches and, every
few minutes, deletes events older than the retention in small batches so that no long
transaction holds the table.

Each stored event has a ``component`` (the part of ``schedd.<component>.…`` in its
logger name) and ``refs``: the ``task_id``, ``run_id`` and ``worker_id`` given as
``extra`` to the log call.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa

from schedd.db import Database
from schedd.errors import first_line
from schedd.models import AuditEntry, SystemLog

log = logging.getLogger("schedd.systemlog")

ROOT_LOGGER = "schedd"
REF_KEYS = ("task_id", "run_id", "worker_id")
MAX_MESSAGE = 4000
BATCH_SIZE = 200
FLUSH_INTERVAL = 1.0
QUEUE_LIMIT = 10_000
PURGE_INTERVAL = 600.0
PURGE_BATCH = 1000


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


def purge_before(db: Database, table: sa.Table, time_column: Any, cutoff: datetime) -> int:
    """Delete rows older than ``cutoff`` in batches of PURGE_BATCH; the number deleted."""
    total = 0
    while True:
        with db.session() as session:
            ids = sa.select(table.c.id).where(time_column < cutoff).limit(PURGE_BATCH)
            result = session.execute(sa.delete(table).where(table.c.id.in_(ids)))
            deleted = cast("sa.CursorResult[Any]", result).rowcount
        total += deleted
        if deleted < PURGE_BATCH:
            return total


class SystemLogWriter:
    """Owns the handler and the thread that stores its records and applies retention."""

    def __init__(
        self,
        db: Database,
        *,
        level: int = logging.WARNING,
        system_logs_days: float = 14.0,
        audit_days: float = 90.0,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        self.db = db
        self.handler = SystemLogHandler(level)
        self.system_logs_days = system_logs_days
        self.audit_days = audit_days
        self.flush_interval = flush_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="systemlog", daemon=True)
        self._next_purge = 0.0

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

    def purge(self, now: datetime | None = None) -> int:
        """Apply retention to system events and audit entries (0 days keeps forever)."""
        now = now or datetime.now(UTC)
        deleted = 0
        for days, table in (
            (self.system_logs_days, SystemLog.__table__),  # type: ignore[attr-defined]
            (self.audit_days, AuditEntry.__table__),  # type: ignore[attr-defined]
        ):
            if days > 0:
                cutoff = now - timedelta(days=days)
                deleted += purge_before(self.db, table, table.c.time, cutoff)
        return deleted

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self._cycle()
        self._cycle(final=True)

    def _cycle(self, *, final: bool = False) -> None:
        try:
            self.flush()
            if self.handler.dropped:
                dropped, self.handler.dropped = self.handler.dropped, 0
                log.warning("system log queue full: %d event(s) not stored", dropped)
            if not final and time.monotonic() >= self._next_purge:
                self._next_purge = time.monotonic() + PURGE_INTERVAL
                deleted = self.purge()
                if deleted:
                    log.info("retention removed %d old system event(s)/audit entries", deleted)
        except sa.exc.SQLAlchemyError as exc:
            # The batch is lost, not the process: events are a convenience, the
            # process log (stderr) keeps every record anyway.
            log.warning("could not store system events: %s", first_line(exc))
