"""Hand committed runs to a broker in batches shared by concurrent callers.

Many threads (the API's requests, above all) each hand over a run or two at once. Each
doing its own publish-and-wait and its own ``UPDATE ... dispatched_at`` costs one
broker round trip (a publisher confirm, a disk sync) and one database transaction per
run. Here callers join a batch instead, as a database does with group commit: the first
caller to arrive becomes the batch's leader, takes everything queued so far (its own
messages included), publishes it with ONE broker call (one confirm wait), stamps every
run's ``dispatched_at`` with one UPDATE per distinct stamp time, and wakes the callers
it served. Callers that arrived meanwhile wait; when the leader is done, one of them
leads the next batch with what queued up during the previous one. Nobody leads twice in
a row while others wait, so no caller is held up longer than about two batches.

Every caller still returns only once its runs were handed over (or could not be), as
:func:`schedd.services.runs.dispatch` promises. Runs stamped when they were inserted
(the API's triggers: ``stamped``) cost no UPDATE at all after the publish; if the
publish fails their stamp is cleared, so the sweeper picks them up as soon as any
run never handed over. (A process that dies between commit and publish leaves them
stamped: the sweeper finds the broker short of their messages and republishes them
after ``redispatch_after``.)
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from schedd import tracing
from schedd.brokers.base import Broker, Message
from schedd.db import Database
from schedd.errors import Unavailable
from schedd.scheduler import store

log = logging.getLogger("schedd.services.runs")


@dataclass(eq=False)
class _Entry:
    messages: Sequence[Message]
    now: datetime
    stamped: bool  # inserted with dispatched_at set already
    done: bool = False
    handed_over: bool = False
    error: BaseException | None = None


@dataclass(eq=False)
class Dispatcher:
    """Group-commit hand-over of runs to one broker (see the module docstring)."""

    db: Database
    broker: Broker
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _queue: list[_Entry] = field(default_factory=list)
    _leading: bool = False

    def dispatch(
        self, messages: Sequence[Message], now: datetime, *, stamped: bool = False
    ) -> bool:
        """Publish, then stamp ``dispatched_at = now``; False when the broker is
        unavailable (the runs stay for the outbox sweeper). ``stamped`` runs were
        stamped when inserted: not again; their stamp is cleared if the publish fails."""
        entry = _Entry(messages, now, stamped)
        with self._cond:
            self._queue.append(entry)
            while self._leading and not entry.done:
                self._cond.wait()
            if not entry.done:
                self._leading = True
                batch, self._queue = self._queue, []
        if not entry.done:
            try:
                self._hand_over(batch)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        if entry.error is not None:
            raise entry.error
        return entry.handed_over

    def _hand_over(self, batch: list[_Entry]) -> None:
        messages = [message for entry in batch for message in entry.messages]
        try:
            with tracing.dispatching(messages, self.broker.name) as carried:
                self.broker.publish(carried)
        except Unavailable as exc:
            log.warning("broker unavailable, %d run(s) left to the sweeper: %s", len(messages), exc)
            self._unstamp([entry for entry in batch if entry.stamped])
            self._settle(batch, handed_over=False)
            return
        except BaseException as exc:
            self._unstamp([entry for entry in batch if entry.stamped])
            self._settle(batch, handed_over=False, error=exc)
            raise
        by_time: dict[datetime, list[int]] = {}
        for entry in batch:
            if not entry.stamped:
                by_time.setdefault(entry.now, []).extend(m.run_id for m in entry.messages)
        if by_time:
            try:
                with self.db.session() as session:
                    for now, run_ids in by_time.items():
                        store.mark_dispatched(session, sorted(run_ids), now)
            except sa.exc.SQLAlchemyError as exc:
                # Published already: without the stamp the sweeper republishes, harmless.
                log.warning("could not record the hand-over of %d run(s): %s", len(messages), exc)
        self._settle(batch, handed_over=True)

    def _unstamp(self, entries: list[_Entry]) -> None:
        """Clear the stamp of runs stamped at insert whose publish failed, so that the
        sweeper takes them after its short grace rather than after redispatch_after."""
        stamps = [(m.run_id, entry.now) for entry in entries for m in entry.messages]
        if not stamps:
            return
        runs = store.runs
        try:
            with self.db.session() as session:
                for run_id, now in sorted(stamps):
                    session.execute(
                        sa.update(runs)
                        .where(runs.c.id == run_id, runs.c.dispatched_at == now)
                        .values(dispatched_at=None)
                    )
        except sa.exc.SQLAlchemyError as exc:  # the sweeper still takes them, later
            log.warning("could not clear the hand-over stamp of %d run(s): %s", len(stamps), exc)

    def _settle(
        self, batch: list[_Entry], *, handed_over: bool, error: BaseException | None = None
    ) -> None:
        with self._cond:
            for entry in batch:
                entry.handed_over, entry.error, entry.done = handed_over, error, True


_dispatchers: weakref.WeakKeyDictionary[Broker, Dispatcher] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def dispatcher_for(db: Database, broker: Broker) -> Dispatcher:
    """The broker's dispatcher (one per broker instance, so its callers share batches)."""
    with _lock:
        found = _dispatchers.get(broker)
        if found is None or found.db is not db:
            found = _dispatchers[broker] = Dispatcher(db, broker)
        return found
