"""The notifier: records alert events and sends their deliveries, one process at a time.

Every schedd process with the api or scheduler role runs a notifier thread when
channels are configured; the ``notifier`` lease (a row in ``leases``) lets one of them
work at a time, and another takes over within the lease's time when that process
stops. Because the API role runs one too, the dead-man's switch (``absent``) still
fires when no scheduler runs at all. Worker processes run none: there are many of
them, often without a route to the receivers.

A pass: record failed, recovered and succeeded events for runs that ended since the
last pass (a new holder looks back LOOKBACK), long_running and absent events, then
send what is due (:mod:`.delivery`). Nothing here runs inside a scheduler pass, so a
slow receiver never delays a fire.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from schedd.alerts import delivery, events
from schedd.config import Settings
from schedd.db import Database
from schedd.errors import first_line
from schedd.scheduler.lease import SchedulerLease

log = logging.getLogger("schedd.alerts")

LEASE_NAME = "notifier"
LOOKBACK = timedelta(hours=1)  # how far back a new holder looks for outcomes
MARGIN = timedelta(seconds=60)  # re-read this much of the last window (commits in flight)


@dataclass
class NotifierReport:
    held: bool = False
    recorded: int = 0
    delivery: delivery.DeliveryReport | None = None
    errors: int = 0


class Notifier:
    """One notifier; :meth:`run_pass` does one pass, :meth:`start` loops in a thread."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        cfg = settings.notify
        longest = max((c.timeout_seconds for c in cfg.channels.values()), default=10.0)
        # Renewed before every send: it must outlast one send and a pass's scans.
        self.lease = SchedulerLease(
            db, ttl=max(6 * cfg.check_interval, 2 * longest + 5), name=LEASE_NAME
        )
        self._since: datetime | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)

    # -- the loop ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        alive = self._thread.is_alive()
        if not alive and self.lease.held:
            try:
                self.lease.release()
            except sa.exc.SQLAlchemyError as exc:
                log.warning("could not release the notifier lease: %s", first_line(exc))
        return not alive

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_pass()
            except Exception:  # keep notifying through bugs; the traceback is logged
                log.exception("notifier pass failed")
            self._stop.wait(self.settings.notify.check_interval)

    # -- one pass ---------------------------------------------------------------------

    def _hold(self, now: datetime | None) -> bool:
        if self.lease.held and self.lease.renew(now):
            return True
        self._since = None  # another may have held it meanwhile: look back again
        taken = self.lease.try_acquire(now)
        if taken:
            log.info("this process sends alerts now (notifier lease taken)")
        return taken

    def run_pass(self, now: datetime | None = None) -> NotifierReport:
        """Record events and send what is due. ``now`` pins the clock (tests)."""
        report = NotifierReport()
        try:
            if not self._hold(now):
                return report
            report.held = True
            clock = now or self.db.now()
            report.recorded = self._record(clock)
        except sa.exc.SQLAlchemyError as exc:
            report.errors += 1
            log.error("notifier could not record events: %s", first_line(exc))
            return report
        try:
            report.delivery = delivery.deliver_due(
                self.db, self.settings, clock, keep_going=lambda: self.lease.renew(now)
            )
        except sa.exc.SQLAlchemyError as exc:
            report.errors += 1
            log.error("notifier could not send alerts: %s", first_line(exc))
        return report

    def _record(self, now: datetime) -> int:
        cfg = self.settings.notify
        since = self._since or now - LOOKBACK
        with self.db.session() as session:
            rules = events.load_rules(session, cfg)
            if not rules:
                self._since = now - MARGIN
                return 0
            recorded, full = events.scan_outcomes(session, rules, cfg, since=since, now=now)
        with self.db.session() as session:
            recorded += events.scan_long_running(session, rules, now)
        with self.db.session() as session:
            recorded += events.scan_absent(session, rules, now)
        if not full:  # a full batch: read the same window again next pass
            self._since = now - MARGIN
        return recorded
