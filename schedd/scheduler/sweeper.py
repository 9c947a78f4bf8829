"""The outbox sweeper: hand pending runs to the broker again when a hand-over was lost.

Runs are committed ``pending`` before they are published, so a crash (or a broker
outage) between the two leaves a pending run that no broker knows about. The sweeper
finds pending runs that were never handed over (``dispatched_at`` NULL, older than a
short grace so it does not race the publisher that is about to do it) or were handed
over more than ``redispatch_after`` seconds ago and are still unclaimed, stamps
``dispatched_at`` and publishes them. Each sweep is bounded by ``batch``; the oldest
hand-overs go first, so a long backlog rotates instead of starving.

Stamping happens before publishing, in its own transaction with ``SKIP LOCKED`` on
PostgreSQL, so two schedulers do not publish the same runs in the same sweep; if the
publish then fails, the runs are simply found again after ``redispatch_after``.
Duplicates remain harmless either way: workers claim in the database.

A broker that claims in the database (the database broker) carries no messages: a
pending run is always visible to its workers, so only never-published runs are
published, at once (a wake-up hint for runs created without a broker at hand, e.g. by
`schedctl --db`), and nothing is republished.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from schedd.brokers.base import Message
from schedd.scheduler import store

log = logging.getLogger("schedd.scheduler.sweeper")

# A run the publisher is about to hand over is left alone this long.
UNDISPATCHED_GRACE = 2.0
# Spelled as the partial index ix_task_runs_pending_dispatched_at spells it.
PENDING_WHERE = sa.text("task_runs.status = 'pending'")


def claim_undispatched(
    session: Session,
    *,
    now: datetime,
    redispatch_after: float,
    batch: int,
    republish: bool = True,
) -> list[Message]:
    """Stamp and return the pending runs to hand over (again), in the caller's transaction.

    ``republish`` False (brokers that claim in the database) takes only runs that were
    never handed over.
    """
    runs = store.runs
    # Without republishing (database broker) a duplicate costs one wake-up: no grace.
    grace = UNDISPATCHED_GRACE if republish else 0.0
    never = sa.and_(
        runs.c.dispatched_at.is_(None),
        runs.c.created_at <= now - timedelta(seconds=grace),
    )
    stale = runs.c.dispatched_at < now - timedelta(seconds=redispatch_after)
    query = (
        sa.select(runs.c.id)
        .where(PENDING_WHERE, sa.or_(never, stale) if republish else never)
        .order_by(runs.c.dispatched_at.asc().nulls_first(), runs.c.id)
        .limit(batch)
    )
    if store.is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    found = session.execute(
        sa.update(runs)
        .where(runs.c.id.in_(query.scalar_subquery()), PENDING_WHERE)
        .values(dispatched_at=now)
        .returning(runs.c.id, runs.c.priority, runs.c.task_type)
    ).all()
    return [Message(run_id, priority, task_type) for run_id, priority, task_type in found]
