"""Stopping a worker: let runs finish, hand back the rest, go offline.

A graceful stop (SIGTERM, or an operator's drain) gives running runs
``drain_grace_seconds`` to finish, then stops the rest (SIGTERM to their process
groups, SIGKILL after ``kill_grace_seconds``) and hands them back as pending for
another worker. A forced stop (a second signal) does the same at once, with SIGKILL.
Either way the final reports are written before the worker marks itself offline, and
the heartbeat keeps going until then, so no run is reaped as lost meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from schedd.db import Database
from schedd.errors import first_line
from schedd.executors.base import StopReason
from schedd.services import workers
from schedd.worker.heartbeat import Heartbeat
from schedd.worker.monitor import Monitor
from schedd.worker.runs import RunBook

log = logging.getLogger("schedd.worker")

REPORT_WAIT = 10.0  # how long final reports may take to be written before giving up
STOP_MARGIN = 5.0  # beyond kill_grace, for stopped runs' threads to return


@dataclass
class Drain:
    db: Database
    book: RunBook
    monitor: Monitor
    heartbeat: Heartbeat
    worker_id: str
    grace: float
    kill_grace: float
    forced: threading.Event

    def run(self) -> None:
        running = len(self.book.executing())
        if not self.forced.is_set():
            self._mark_draining()
            if running:
                log.info("draining: waiting up to %g s for %d running run(s)", self.grace, running)
            self._wait(lambda: not self.book.executing(), self.grace)
        left = self.book.stop_all(StopReason.shutdown, immediate=self.forced.is_set())
        if left:
            log.warning("stopping %d run(s) to hand them back", left)
            self._wait(lambda: not self.book.executing(), self.kill_grace + STOP_MARGIN)
        if self.book.executing():
            log.error(
                "%d run(s) did not stop; the reaper will mark them lost", len(self.book.executing())
            )
        if not self._wait(self.book.idle, REPORT_WAIT, escalate=False):
            log.error(
                "could not write the end of %d run(s); the process guard records those that "
                "ended when the database answers, the reaper marks the others lost",
                len(self.book.held_ids()),
            )
        self.monitor.stop(timeout=5.0)
        self.heartbeat.stop()
        self._mark_offline()

    def _wait(self, done: Callable[[], bool], timeout: float, *, escalate: bool = True) -> bool:
        """Wait until ``done()`` or ``timeout``; a forced stop kills what still runs."""
        deadline = time.monotonic() + timeout
        while not done():
            if escalate and self.forced.is_set():
                self.book.stop_all(StopReason.shutdown, immediate=True)
                if not self.book.executing():
                    return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.book.wait(min(remaining, 0.1))
        return True

    def _mark_draining(self) -> None:
        try:
            with self.db.session() as session:
                workers.mark_draining(session, self.worker_id)
        except SQLAlchemyError as exc:
            log.warning("cannot mark worker %s draining: %s", self.worker_id, first_line(exc))

    def _mark_offline(self) -> None:
        try:
            with self.db.session() as session:
                workers.deregister(session, self.worker_id)
        except SQLAlchemyError as exc:
            log.warning(
                "cannot mark worker %s offline (the reaper will): %s",
                self.worker_id,
                first_line(exc),
            )
