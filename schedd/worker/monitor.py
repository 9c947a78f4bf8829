"""The worker's monitor thread: the one place that writes run state after the claim.

Each round (every ``poll_interval``, or at once when a run ends):

1. writes the final reports of runs whose executor returned, all in one transaction
   (the ends of runs as one statement on PostgreSQL), each fenced by its own claim; a
   report that fails on a database error is kept and tried again;
2. checks all executing runs in one query: a cancel request stops the run as
   cancelled, a run that is no longer ours (reaped as lost, re-claimed) is killed;
3. about every ``flush_interval``, stores new output of executing runs, each fenced,
   in one statement on PostgreSQL; a store that matches nothing also means the run
   was taken away.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from schedd import tracing
from schedd.brokers.base import Message
from schedd.db import Database
from schedd.errors import first_line
from schedd.executors.base import StopReason
from schedd.models import RunStatus
from schedd.scheduler.notify import runs_need_scheduler
from schedd.services import claims
from schedd.services.output import OutputBatch
from schedd.worker.runs import Action, ActiveRun, Report, RunBook

log = logging.getLogger("schedd.worker")

POLL_INTERVAL = 0.5
FLUSH_INTERVAL = 1.0


class Monitor:
    def __init__(
        self,
        db: Database,
        book: RunBook,
        *,
        publish: Callable[[list[Message]], None],
        wake_scheduler: Callable[[], None] | None = None,
        on_recorded: Callable[[list[int]], None] | None = None,
        poll_interval: float = POLL_INTERVAL,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        self.db = db
        self.book = book
        self.publish = publish
        self.wake_scheduler = wake_scheduler
        self.on_recorded = on_recorded
        self.poll_interval = poll_interval
        self.flush_interval = flush_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="worker-monitor", daemon=True)
        self._last_flush = 0.0
        self._failing: set[str] = set()  # steps whose last attempt failed

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self.book.wake()
        self._thread.join(timeout)

    def _loop(self) -> None:
        next_check = 0.0
        while not self._stop.is_set():
            self._guarded(self.write_reports)
            now = time.monotonic()
            if now >= next_check:
                next_check = now + self.poll_interval
                self._guarded(self.check_runs)
                if now - self._last_flush >= self.flush_interval:
                    self._guarded(self.flush_output)
                    self._last_flush = now
            if not self.book.has_reports():
                self.book.wait(max(0.0, next_check - time.monotonic()))

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run one step; a database error is logged when it starts and retried later."""
        name = step.__name__
        try:
            step()
        except SQLAlchemyError as exc:
            if name not in self._failing:
                log.warning(
                    "worker monitor: %s failed, will retry: %s: %s",
                    name,
                    type(exc).__name__,
                    first_line(exc),
                )
            self._failing.add(name)
            self._stop.wait(self.poll_interval)
        else:
            if name in self._failing:
                log.info("worker monitor: %s works again", name)
            self._failing.discard(name)

    def write_reports(self) -> None:
        """Write queued final reports in one transaction; on error they stay queued."""
        # In run id order, like every multi-run write of this worker, so that two of its
        # transactions never lock the same runs in opposite orders.
        reports = sorted(self.book.take_reports(), key=lambda report: report.run.run_id)
        if not reports:
            return
        try:
            with self.db.session() as session:
                written = _write(session, reports)
                # A retry or a dependent release is due: wake the schedulers (NOTIFY at
                # commit on PostgreSQL, the in-process one through wake_scheduler).
                ended = [r.run.run_id for r, result in written if _ended(r, result)]
                wake = runs_need_scheduler(session, ended)
        except BaseException:
            self.book.requeue(reports)
            raise
        if self.on_recorded is not None:  # the guard no longer needs to hold them
            self.on_recorded([r.run.run_id for r in reports if r.action is Action.finish])
        if wake and self.wake_scheduler is not None:
            self.wake_scheduler()
        handed_back: list[Message] = []
        for report, result in written:
            run = report.run
            if report.action is Action.finish and result is False:
                log.info(
                    "run %d ended (%s) but is no longer this worker's; nothing recorded",
                    run.run_id,
                    report.status,
                )
            elif report.action is Action.finish and isinstance(result, RunStatus):
                log.info(
                    "run %d ended (%s): recorded by this worker's guard while the worker "
                    "could not (frozen, or cut off from the database)",
                    run.run_id,
                    result,
                )
            elif report.action is Action.hand_back:
                if result is RunStatus.pending:
                    handed_back.append(
                        Message(run.run_id, run.claimed.priority, run.claimed.task_type)
                    )
                log.info("run %d handed back (%s)", run.run_id, result or "no longer ours")
        self.book.forget(report.run.run_id for report in reports)
        if handed_back:
            self.publish(handed_back)

    def check_runs(self) -> None:
        """Stop runs an operator cancelled, and runs that are no longer ours."""
        runs = self.book.executing()
        if not runs:
            return
        with self.db.session() as session:
            checks = claims.check(session, [run.claim for run in runs])
        for run in runs:
            if run.run_id in checks.gone:
                if not run.stop.is_set():
                    log.warning(
                        "run %d is no longer this worker's (reaped or re-claimed); killing it",
                        run.run_id,
                    )
                run.stop.stop(StopReason.lost)
            elif run.run_id in checks.cancel:
                if not run.stop.is_set():
                    log.info("run %d: cancel requested; stopping it", run.run_id)
                run.stop.stop(StopReason.cancelled)

    def flush_output(self) -> None:
        """Store new output of executing runs (one transaction for all of them)."""
        batches: list[tuple[ActiveRun, OutputBatch]] = []
        for run in sorted(self.book.executing(), key=lambda run: run.run_id):
            batch = run.capture.pending()
            if batch is not None:
                batches.append((run, batch))
        if not batches:
            return
        with self.db.session() as session:
            stored = claims.report_outputs(session, [(run.claim, batch) for run, batch in batches])
        lost = [run for run, _ in batches if run.run_id not in stored]
        for run, batch in batches:
            run.capture.stored(batch)
        for run in lost:
            log.warning("run %d is no longer this worker's; killing it", run.run_id)
            run.stop.stop(StopReason.lost)


def _ended(report: Report, result: bool | RunStatus | None) -> bool:
    """Whether writing ``report`` ended its run (a finish that matched its claim)."""
    return report.action is Action.finish and result is True


def _write(session: Session, reports: list[Report]) -> list[tuple[Report, bool | RunStatus | None]]:
    """Final reports, each fenced by its run's claim: the ends of runs in one batch
    (True: written; False: not ours; the status: the guard had recorded it under this
    claim), then each hand-back (its new status, or None when not ours).
    A traced run's ``worker.report`` span covers the write its report was part of."""
    with contextlib.ExitStack() as spans:
        traced: dict[int, tracing.Span] = {}
        for report in reports:
            run = report.run
            if run.execute_span is None:
                continue
            attributes: dict[str, tracing.Attribute | None] = {
                "sched.run_id": run.run_id,
                "sched.action": str(report.action),
            }
            started = spans.enter_context(
                tracing.span(
                    "worker.report", parent=run.execute_span.traceparent, attributes=attributes
                )
            )
            if started is not None:
                traced[run.run_id] = started
        written = _write_reports(session, reports)
        for report, result in written:
            found = traced.get(report.run.run_id)
            if found is not None:
                found.set("sched.recorded", result is not None and result is not False)
        return written


def _write_reports(
    session: Session, reports: list[Report]
) -> list[tuple[Report, bool | RunStatus | None]]:
    finals: list[tuple[Report, claims.Final]] = []
    results: dict[int, bool | RunStatus | None] = {}
    for report in reports:
        run = report.run
        if report.action is Action.finish:
            assert report.status is not None
            final = claims.Final(
                run.claim,
                report.status,
                report.exit_code,
                report.execution_time,
                report.error_message,
                run.capture.result() or None,
                run.capture.pending(),
                report.cpu_seconds,
                report.max_rss_mb,
            )
            finals.append((report, final))
        elif report.action is Action.hand_back:
            results[run.run_id] = claims.hand_back(session, run.claim, batch=run.capture.pending())
        else:
            results[run.run_id] = None
    ended = claims.finish_many(session, [final for _, final in finals])
    # A finish that matched nothing: taken away, or recorded by this worker's guard
    # while the worker was frozen or cut off (rare: one more query then).
    by_guard = claims.recorded(
        session, [final for _, final in finals if final.claim.run_id not in ended]
    )
    for report, _ in finals:
        run_id = report.run.run_id
        results[run_id] = report.status if run_id in by_guard else run_id in ended
    return [(report, results[report.run.run_id]) for report in reports]
