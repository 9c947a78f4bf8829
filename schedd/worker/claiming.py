"""The claim loop: take runs while there is free capacity, start each in its own thread.

With the database broker (``claims_in_database``) the worker claims pending runs
straight from the table, as many as it has free slots, highest priority first, and
waits on the broker for a hint when it found fewer than it could take. With a message
broker it claims the run ids delivered in one round in one transaction; a delivery
is acked once its run is claimed (or found taken or ended), and handed back when the
run is pending but not for this worker (an executor it does not offer).

The loop never claims while the worker is fenced, and ends when ``should_stop`` says.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from sqlalchemy.exc import SQLAlchemyError

from schedd.brokers.base import Broker
from schedd.db import Database
from schedd.errors import first_line
from schedd.models import RunStatus
from schedd.services import claims
from schedd.services.claims import ClaimedRun
from schedd.worker.runs import RunBook

log = logging.getLogger("schedd.worker")

IDLE_WAIT = 1.0  # longest wait for a broker hint or delivery before looking again
ERROR_BACKOFF = (0.5, 5.0)  # first and longest pause after a database error


class Claimer:
    def __init__(
        self,
        db: Database,
        broker: Broker,
        book: RunBook,
        *,
        worker_id: str,
        task_types: Sequence[str],
        executor_types: Sequence[str],
        start_run: Callable[[ClaimedRun], None],
        fenced: Callable[[], bool],
    ) -> None:
        self.db = db
        self.broker = broker
        self.book = book
        self.worker_id = worker_id
        self.task_types = list(task_types)
        self.executor_types = list(executor_types)
        self.start_run = start_run
        self.fenced = fenced
        self._backoff = 0.0

    def loop(self, should_stop: Callable[[], bool]) -> None:
        while not should_stop():
            if self.fenced():
                self.book.wait(0.2)
                continue
            free = self.book.free()
            if free == 0:
                self.broker.keepalive()  # e.g. AMQP heartbeats during long runs
                self.book.wait(IDLE_WAIT)
                continue
            try:
                if self.broker.claims_in_database:
                    self._claim_from_database(free)
                else:
                    self._claim_deliveries(free)
            except SQLAlchemyError as exc:
                self._pause_after(exc)
            else:
                self._backoff = 0.0

    def _pause_after(self, exc: SQLAlchemyError) -> None:
        first, longest = ERROR_BACKOFF
        self._backoff = min(longest, self._backoff * 2 or first)
        log.warning(
            "cannot claim runs (retrying in %.1f s): %s",
            self._backoff,
            first_line(exc),
        )
        self.book.wait(self._backoff)

    def _claim_from_database(self, free: int) -> None:
        with self.db.session() as session:
            claimed = claims.claim_next(
                session,
                self.worker_id,
                limit=free,
                task_types=self.task_types,
                executor_types=self.executor_types,
            )
        for run in claimed:
            self.start_run(run)
        if len(claimed) < free:
            # Fewer pending runs than free slots: wait for a hint (NOTIFY, an in-process
            # publish) or the broker's own polling interval.
            self.broker.consume(self.task_types, free, IDLE_WAIT)

    def _claim_deliveries(self, free: int) -> None:
        deliveries = self.broker.consume(self.task_types, free, IDLE_WAIT)
        if not deliveries:
            return
        try:
            # One transaction for all the deliveries of this round.
            with self.db.session() as session:
                claimed = claims.claim_runs(
                    session,
                    [delivery.run_id for delivery in deliveries],
                    self.worker_id,
                    task_types=self.task_types,
                    executor_types=self.executor_types,
                )
                taken = {run.claim.run_id for run in claimed}
                unclaimed = [d.run_id for d in deliveries if d.run_id not in taken]
                statuses = claims.run_statuses(session, unclaimed)
        except SQLAlchemyError:
            for delivery in deliveries:  # nothing was claimed: others may take them
                self.broker.reject(delivery, requeue=True)
            raise
        # The message's trace context (its dispatch span) is what the claim continues.
        traces = {d.run_id: d.traceparent for d in deliveries if d.traceparent}
        for run in claimed:
            trace = traces.get(run.claim.run_id)
            self.start_run(replace(run, trace_context=trace) if trace else run)
        for delivery in deliveries:
            if delivery.run_id in taken or statuses.get(delivery.run_id) != RunStatus.pending:
                # Claimed now, or taken by another worker, ended, or deleted.
                self.broker.ack(delivery)
                continue
            log.warning(
                "run %d is pending but not for this worker (its executor is not "
                "one of %s); handing the delivery back",
                delivery.run_id,
                ", ".join(self.executor_types),
            )
            self.broker.reject(delivery, requeue=True)
            time.sleep(0.1)  # do not spin on a delivery no worker here can take
