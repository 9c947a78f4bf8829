"""The scheduler role of `schedd run`: a daemon thread looping over scheduler passes.

Loop: one pass (:class:`schedd.scheduler.passes.Scheduler`), then sleep until the
earliest ``next_run_at`` of the active tasks or ``not_before`` of the waiting runs, at
most ``scheduling_interval`` seconds. ``Context.tasks_changed`` (set by the API in this
process) and, on PostgreSQL, a NOTIFY on ``sched_tasks`` (from any process) wake it
early; polling is the fallback.

SQLite: one scheduler per database. :meth:`SchedulerRole.start` takes the lease
(:mod:`schedd.scheduler.lease`) or raises Conflict naming the scheduler that holds it,
which the daemon reports as one line and a non-zero exit. PostgreSQL: no lease; any
number of schedulers share the work (``SKIP LOCKED``, unique fire key).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import SQLAlchemyError

from schedd.daemon import Context
from schedd.errors import Conflict
from schedd.scheduler.lease import SchedulerLease
from schedd.scheduler.notify import TaskChangeListener
from schedd.scheduler.passes import ERROR_BACKOFF, Scheduler

log = logging.getLogger("schedd.scheduler")


class SchedulerRole:
    """Runs scheduler passes in a background thread until stopped."""

    name = "scheduler"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.scheduler = Scheduler(ctx.db, ctx.broker, ctx.settings)
        interval = ctx.settings.scheduler.scheduling_interval
        # Renewed every pass (at most every interval); long enough to survive slow passes.
        self.lease = (
            SchedulerLease(ctx.db, ttl=max(30.0, 6 * interval)) if ctx.db.is_sqlite else None
        )
        self.listener = (
            TaskChangeListener(ctx.db, ctx.tasks_changed) if ctx.db.is_postgres else None
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)

    def start(self) -> None:
        """Take the SQLite lease (Conflict if another scheduler holds it), then run."""
        if self.lease is not None:
            self.lease.acquire()
        if self.listener is not None:
            self.listener.start()
        self._thread.start()

    def stop(self, *, graceful: bool = True) -> None:
        """Finish the current pass and stop; a pass is short, so graceful or not is alike."""
        self._stop.set()
        self.ctx.tasks_changed.set()  # wake the loop's sleep
        if self.listener is not None:
            self.listener.stop()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        if self.listener is not None:
            self.listener.join(timeout)
        return not self._thread.is_alive()

    def _stopping(self) -> bool:
        return self._stop.is_set() or self.ctx.stopping.is_set()

    def _run(self) -> None:
        interval = self.ctx.settings.scheduler.scheduling_interval
        lease_lost_logged = False
        try:
            while not self._stopping():
                self.ctx.tasks_changed.clear()
                try:
                    if not self._hold_lease():
                        if not lease_lost_logged:
                            log.error(
                                "lost the SQLite scheduler lease; not scheduling until it is back"
                            )
                            lease_lost_logged = True
                        self._sleep(interval)
                        continue
                    lease_lost_logged = False
                    report = self.scheduler.run_pass()
                    delay = self.scheduler.sleep_seconds(report)
                except Exception:  # keep scheduling through bugs; the traceback is logged
                    log.exception("scheduler pass failed")
                    delay = min(ERROR_BACKOFF, interval)
                self._sleep(delay)
        finally:
            self._release_lease()

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and not self._stopping():
            self.ctx.tasks_changed.wait(seconds)

    def _hold_lease(self) -> bool:
        """Renew the SQLite lease (or take it back once free); True when held."""
        if self.lease is None or self.lease.renew():
            return True
        try:
            self.lease.acquire()
        except Conflict:
            return False
        log.info("took the SQLite scheduler lease again")
        return True

    def _release_lease(self) -> None:
        if self.lease is None or not self.lease.held:
            return
        try:
            self.lease.release()
        except SQLAlchemyError as exc:  # it expires by itself within its ttl
            log.warning("could not release the SQLite scheduler lease: %s", exc)
