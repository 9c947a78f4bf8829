"""One scheduler pass: fire, reap, release dependents, retry, promote, sweep, retain.

:class:`Scheduler` holds no thread: :meth:`Scheduler.run_pass` does one pass and says
how long the caller may sleep; the role (:mod:`schedd.scheduler.role`) loops over it,
and tests and the benchmark call it directly with an injected clock.

Each step is its own transaction, and its runs are published after that commit.
Every step is idempotent and safe with other schedulers on the same database; a step
that fails (database restarting) is logged and the next steps still run.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from schedd import tracing
from schedd.brokers.base import Broker, Message
from schedd.config import Settings
from schedd.db import Database
from schedd.errors import SchedError, first_line
from schedd.models import TaskStatus
from schedd.scheduler import (
    dependencies,
    fire,
    metrics,
    observation,
    reaper,
    retention,
    retries,
    store,
    sweeper,
)
from schedd.services.runs import dispatch
from schedd.types import utcnow

log = logging.getLogger("schedd.scheduler")

# First look for runs to retry this far back (later passes look back RETRY_MARGIN from
# the previous scan: room for clock skew between hosts and transactions in flight).
RETRY_LOOKBACK = timedelta(days=1)
RETRY_MARGIN = timedelta(minutes=5)
# Most fire batches in one pass before the other steps get their turn.
MAX_FIRE_BATCHES = 20
# Threads firing the batches of one burst at once on PostgreSQL (SQLite has one writer).
FIRE_THREADS = 2
# Shortest sleep while tasks are due that other schedulers hold locked.
MIN_SLEEP = 0.02
SWEEP_INTERVAL = 1.0
# Retention (runs, system events, audit entries): first this long after start (a
# scheduler in a crash loop has better things to do), then every RETENTION_INTERVAL, or
# at the next pass while a purge left old rows behind.
RETENTION_FIRST_DELAY = 60.0
RETENTION_INTERVAL = 300.0
# After a failed step, wait this long (at most the scheduling interval) before the next
# pass: a database that is down must not turn the loop into a busy loop of errors.
ERROR_BACKOFF = 1.0


@dataclass
class PassReport:
    """What one pass did (for tests, the benchmark and debug logs)."""

    fired: int = 0  # pending runs created by schedule and dependency fires
    skipped: int = 0  # skipped runs recorded
    retries: int = 0
    promoted: int = 0
    reaped: int = 0
    offline: int = 0
    swept: int = 0
    purged: int = 0  # old finished runs deleted by retention
    purged_events: int = 0  # old system events and audit entries deleted by retention
    errors: int = 0
    more_due: bool = False  # a fire batch was full: run the next pass at once
    published: list[Message] = field(default_factory=list)


class Scheduler:
    """The scheduler's work, pass by pass, over one database and broker."""

    def __init__(
        self,
        db: Database,
        broker: Broker | None,
        settings: Settings,
        *,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.db = db
        self.broker = broker
        self.settings = settings
        cfg = settings.scheduler
        self.fire_settings = fire.FireSettings(
            grace=cfg.misfire_grace_seconds, max_catchup=cfg.max_catchup, batch_size=cfg.batch_size
        )
        self.rand = rand
        self._retry_since: datetime | None = None
        self._last_reap = float("-inf")
        self._last_sweep = float("-inf")
        self._next_retention = time.monotonic() + RETENTION_FIRST_DELAY
        self._fire_pool: ThreadPoolExecutor | None = None  # started by the first burst
        self.clock_skew = 0.0  # this host's clock minus the database's, in seconds
        self._skew_logged = False
        # A gap of half a heartbeat timeout between two good steps may hide an outage
        # (but the scheduler's own sleep between passes is no gap).
        self.observation = observation.Observation(
            max(settings.effective_heartbeat_timeout / 2, 2 * cfg.scheduling_interval)
        )

    def run_pass(self, now: datetime | None = None) -> PassReport:
        """Do every step once. ``now`` pins the clock (tests); None uses the real one."""
        started = time.monotonic()
        report = PassReport()
        clock = now or self._database_now()
        # Fire first: it is what is late when a pass is slow. Reap before retrying, so
        # that a lost run is retried in the same pass.
        self._step(report, "fire", lambda: self._fire(report, clock))
        monotonic = time.monotonic()
        if now is not None or monotonic - self._last_reap >= self.settings.scheduler.reap_interval:
            self._last_reap = monotonic
            # A pinned clock (tests) judges at once; the real one after a full heartbeat
            # timeout of reachability (see :mod:`.observation`).
            timeout = self.settings.effective_heartbeat_timeout
            if now is not None or self.observation.may_judge(timeout):
                self._step(report, "reaper", lambda: self._reap(report))
        self._step(report, "dependencies", lambda: self._release(report, clock))
        self._step(report, "retries", lambda: self._retry(report, clock))
        # Promotion looks at the clock again: a run the reaper just ended (by the
        # database's clock, after this pass began) is retried now, not a pass later.
        self._step(report, "promotion", lambda: self._promote(report, now or self._corrected_now()))
        if now is not None or monotonic - self._last_sweep >= SWEEP_INTERVAL:
            self._last_sweep = monotonic
            self._step(report, "sweeper", lambda: self._sweep(report, clock))
        if monotonic >= self._next_retention:
            # The real clock, even when ``now`` is pinned: run ages are real ones.
            self._next_retention = monotonic + RETENTION_INTERVAL
            self._step(report, "retention", lambda: self._retain(report))
        metrics.PASS_SECONDS.observe(time.monotonic() - started)
        return report

    def sleep_seconds(self, report: PassReport) -> float:
        """How long to sleep after ``report``'s pass: until the next due task or waiting
        run, at most ``scheduling_interval``; at once when a fire batch was full."""
        interval = self.settings.scheduler.scheduling_interval
        if report.errors:
            return min(interval, ERROR_BACKOFF)  # e.g. the database is restarting
        if report.more_due:
            return 0.0
        try:
            with self.db.session() as session:
                due = session.execute(
                    sa.select(sa.func.min(store.tasks.c.next_run_at)).where(
                        store.tasks.c.status == TaskStatus.active.value
                    )
                ).scalar_one()
                waiting = retries.next_waiting(session)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("cannot read the next due time: %s", first_line(exc))
            return interval
        soonest = min((t for t in (due, waiting) if t is not None), default=None)
        if soonest is None:
            return interval
        # A due task that this pass did not take is locked by another scheduler, which
        # is firing it now: look again shortly rather than spin.
        database_now = utcnow() - timedelta(seconds=self.clock_skew)
        return min(interval, max(MIN_SLEEP, (soonest - database_now).total_seconds()))

    def _corrected_now(self) -> datetime:
        """The host clock corrected by the difference to the database's last measured."""
        return utcnow() - timedelta(seconds=self.clock_skew)

    def _database_now(self) -> datetime:
        """The database's clock, read once per pass: a host clock running ahead must
        never consume fire times. The difference is a metric and, above
        ``max_clock_skew_seconds``, a warning."""
        before = utcnow()
        try:
            database_now = self.db.now()
        except sa.exc.SQLAlchemyError:
            # The database is away (this pass's steps will fail and say so): the host
            # clock corrected by the last difference measured.
            return self._corrected_now()
        after = utcnow()
        skew = ((before + (after - before) / 2) - database_now).total_seconds()
        self.clock_skew = skew
        metrics.CLOCK_SKEW.set(skew)
        limit = self.settings.scheduler.max_clock_skew_seconds
        if abs(skew) > limit and not self._skew_logged:
            log.warning(
                "this host's clock is %+.1fs off the database's (more than "
                "max_clock_skew_seconds = %gs); scheduling by the database's clock",
                skew,
                limit,
            )
        elif abs(skew) <= limit and self._skew_logged:
            log.info("this host's clock agrees with the database's again (%+.1fs)", skew)
        self._skew_logged = abs(skew) > limit
        return database_now

    # --- steps -----------------------------------------------------------------------

    def _step(self, report: PassReport, name: str, work: Callable[[], None]) -> None:
        try:
            work()
        except (sa.exc.SQLAlchemyError, SchedError) as exc:
            report.errors += 1
            if isinstance(exc, sa.exc.SQLAlchemyError):
                self.observation.failed()
            log.error("scheduler %s step failed: %s", name, first_line(exc))
        else:
            self.observation.succeeded()

    def _hint(self, report: PassReport, messages: list[Message]) -> None:
        if not messages or self.broker is None:
            return
        try:
            with tracing.dispatching(messages, self.broker.name) as carried:
                self.broker.publish(carried)
        except SchedError as exc:  # only a hint: its workers poll the table anyway
            log.warning("could not wake workers: %s", exc)
            return
        report.published.extend(messages)

    def _publish(self, report: PassReport, messages: list[Message]) -> None:
        if messages:
            dispatch(self.db, self.broker, messages)
            report.published.extend(messages)

    def _fire(self, report: PassReport, now: datetime | None) -> None:
        """Fire batches until one is not full. On PostgreSQL a full first batch (a
        burst) brings in FIRE_THREADS - 1 helper threads that fire further batches on
        their own connections meanwhile: SKIP LOCKED gives each batch disjoint tasks
        (as with several schedulers) and one thread's round trips overlap another's
        Python work. Only this thread publishes and reports."""
        # With a broker that claims in the database the committed row is the hand-over:
        # stamp it in the insert and publish only as a wake-up hint (one write less).
        in_database = self._in_database()
        first = self._fire_batch(now, in_database)
        self._fired(report, first, in_database)
        if not first.full:
            return
        helpers: list[Future[list[fire.FireResult]]] = []
        if self.db.is_postgres and FIRE_THREADS > 1:
            if self._fire_pool is None:
                self._fire_pool = ThreadPoolExecutor(
                    FIRE_THREADS - 1, thread_name_prefix="scheduler-fire"
                )
            helpers = [
                self._fire_pool.submit(self._fire_batches, now, in_database)
                for _ in range(FIRE_THREADS - 1)
            ]
        try:
            for _ in range(MAX_FIRE_BATCHES - 1):
                result = self._fire_batch(now, in_database)
                self._fired(report, result, in_database)
                if not result.full:
                    break
        finally:
            # Committed batches are published even when this thread's batch failed.
            for helper in helpers:
                results = helper.result()
                for result in results:
                    self._fired(report, result, in_database, last=False)
                report.more_due |= results[-1].full

    def _fire_batches(self, now: datetime | None, in_database: bool) -> list[fire.FireResult]:
        """A helper thread's share of a burst: batches until one is not full."""
        results: list[fire.FireResult] = []
        for _ in range(MAX_FIRE_BATCHES - 1):
            results.append(self._fire_batch(now, in_database))
            if not results[-1].full:
                break
        return results

    def _fire_batch(self, now: datetime | None, in_database: bool) -> fire.FireResult:
        with self.db.session() as session:
            return fire.fire_due(
                session,
                now=now or utcnow(),
                settings=self.fire_settings,
                created_at=now,
                dispatched=in_database,
            )

    def _fired(
        self, report: PassReport, result: fire.FireResult, in_database: bool, *, last: bool = True
    ) -> None:
        """Report and publish a committed fire batch."""
        fire.report(result)
        self._alert_missed(result)
        messages = result.messages
        report.fired += len(messages)
        report.skipped += len(result.runs) - len(messages)
        if in_database:
            self._hint(report, messages)
        else:
            self._publish(report, messages)
        if last:
            report.more_due = result.full

    def _alert_missed(self, result: fire.FireResult) -> None:
        """Record ``missed`` alert events for this committed batch (its own small
        transaction, only when times were missed and channels are configured; a
        failure is logged, never a failed fire)."""
        if not self.settings.notify.channels or not any(f.decision.missed for f in result.fires):
            return
        from schedd.alerts.events import missed_events

        try:
            with self.db.session() as session:
                missed_events(
                    session, self.settings.notify, result.fires, result.created_at or utcnow()
                )
        except sa.exc.SQLAlchemyError as exc:
            log.warning("could not record missed-fire alerts: %s", first_line(exc))

    def _in_database(self) -> bool:
        """Whether the broker claims in the database: then the committed row is the
        hand-over (stamped as it is written) and the publish only a wake-up hint."""
        return self.broker is not None and self.broker.claims_in_database

    def _hand_over(self, report: PassReport, messages: list[Message]) -> None:
        if self._in_database():
            self._hint(report, messages)
        else:
            self._publish(report, messages)

    def _release(self, report: PassReport, now: datetime | None) -> None:
        with self.db.session() as session:
            released = dependencies.release_dependents(
                session, now=now or utcnow(), dispatched=self._in_database()
            )
        dependencies.report(released)
        messages = [r.run.message for r in released if r.reason is None]
        report.fired += len(messages)
        report.skipped += len(released) - len(messages)
        self._hand_over(report, messages)

    def _retry(self, report: PassReport, now: datetime | None) -> None:
        scan_time = now or utcnow()
        since = self._retry_since or scan_time - RETRY_LOOKBACK
        with self.db.session() as session:
            created, full = retries.create_retries(
                session,
                since=since,
                now=scan_time,
                delay_max=self.settings.scheduler.retry_delay_max,
                batch=self.settings.scheduler.batch_size,
                rand=self.rand,
            )
        retries.report(created)
        report.retries += len(created)
        if not full:  # a full batch: scan the same window again next pass
            self._retry_since = scan_time - RETRY_MARGIN

    def _promote(self, report: PassReport, now: datetime | None) -> None:
        with self.db.session() as session:
            messages = retries.promote_waiting(
                session,
                now=now or utcnow(),
                batch=self.settings.scheduler.batch_size,
                dispatched=self._in_database(),
            )
        report.promoted += len(messages)
        self._hand_over(report, messages)

    def _reap(self, report: PassReport) -> None:
        timeout = self.settings.effective_heartbeat_timeout
        db_now = self.db.now()  # heartbeat ages are judged by the database's clock
        with self.db.session() as session:
            result = reaper.reap(
                session,
                db_now=db_now,
                heartbeat_timeout=timeout,
                default_timeout=self.settings.scheduler.task_timeout,
            )
        reaper.report(result, timeout)
        report.reaped += len(result.runs)
        report.offline += len(result.offline)

    def _retain(self, report: PassReport) -> None:
        cfg = self.settings.retention
        now = utcnow()
        more = False
        if cfg.runs_days > 0:  # 0 keeps the history forever
            deleted, left = retention.purge_runs(self.db, now - timedelta(days=cfg.runs_days))
            report.purged += deleted
            more |= left
            if deleted:
                log.info(
                    "retention removed %d finished run(s) older than %g days",
                    deleted,
                    cfg.runs_days,
                )
        for days, table, what in (
            (cfg.system_logs_days, retention.system_logs, "system event(s)"),
            (cfg.audit_days, retention.audit_log, "audit entries"),
            (cfg.system_logs_days, retention.notify_deliveries, "alert deliveries"),
            (cfg.system_logs_days, retention.notify_events, "alert events"),
        ):
            if days <= 0:
                continue
            deleted, left = retention.purge_events(self.db, table, now - timedelta(days=days))
            report.purged_events += deleted
            more |= left
            if deleted:
                log.info("retention removed %d %s older than %g days", deleted, what, days)
        if more:
            self._next_retention = time.monotonic()  # go on at the next pass

    def _sweep(self, report: PassReport, now: datetime | None) -> None:
        if self.broker is None:
            return
        republish = not self.broker.claims_in_database
        with self.db.session() as session:
            budget: dict[str, int] | None = None
            if republish:
                try:
                    budget = sweeper.republish_budget(session, self.broker)
                except SchedError as exc:  # cannot count: republish nothing old now
                    log.debug("cannot count the broker's messages: %s", exc)
                    budget = {}
            messages = sweeper.claim_undispatched(
                session,
                now=now or utcnow(),
                redispatch_after=self.settings.scheduler.redispatch_after,
                batch=self.settings.scheduler.batch_size,
                republish=republish,
                budget=budget,
            )
        if not messages:
            return
        metrics.REDISPATCHED.inc(len(messages))
        log.info("handing %d pending run(s) to the broker again", len(messages))
        try:
            self.broker.publish(messages)
        except SchedError as exc:
            log.warning("broker unavailable, sweep again later: %s", exc)
            return
        report.swept += len(messages)
        report.published.extend(messages)
