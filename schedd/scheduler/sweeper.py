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

Republishing is paced by what the broker lost, not by age alone: under overload a run
waits in the queue longer than ``redispatch_after`` without anything being wrong, and
republishing every such run each time would fill the broker with copies (the backlog
times the passes) while the workers drain it at the same speed. So when the broker can
count its messages (:meth:`Broker.backlog`), each task type gets a budget: its pending
runs that were handed over, minus the messages the broker still holds for it. Only
that many stale runs (oldest hand-over first) are republished; a broker that lost
nothing gets none, one that lost k messages gets k. The broker thus holds about one
message per pending run, whatever the backlog. Runs never handed over are always
published (no broker has them).

A broker that claims in the database (the database broker) carries no messages: a
pending run is always visible to its workers, so only never-published runs are
published, at once (a wake-up hint for runs created without a broker at hand, e.g. by
`schedctl --db`), and nothing is republished.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from schedd.brokers.base import Broker, Message
from schedd.scheduler import store

log = logging.getLogger("schedd.scheduler.sweeper")

# A run the publisher is about to hand over is left alone this long.
UNDISPATCHED_GRACE = 2.0
# Spelled as the partial index ix_task_runs_pending_dispatched_at spells it.
PENDING_WHERE = sa.text("task_runs.status = 'pending'")


def republish_budget(session: Session, broker: Broker) -> dict[str, int] | None:
    """Per task type, how many handed-over pending runs the broker holds no message for;
    None when the broker cannot count (then age alone decides, bounded by the batch).
    Raises ``Unavailable`` when the broker does not answer."""
    runs = store.runs
    counts = session.execute(
        sa.select(runs.c.task_type, sa.func.count())
        .where(PENDING_WHERE, runs.c.dispatched_at.is_not(None))
        .group_by(runs.c.task_type)
    ).all()
    budget: dict[str, int] = {}
    for task_type, count in counts:
        held = broker.backlog([task_type])
        if held is None:
            return None
        budget[task_type] = max(0, int(count) - held)
    return budget


def claim_undispatched(
    session: Session,
    *,
    now: datetime,
    redispatch_after: float,
    batch: int,
    republish: bool = True,
    budget: Mapping[str, int] | None = None,
) -> list[Message]:
    """Stamp and return the pending runs to hand over (again), in the caller's transaction.

    ``republish`` False (brokers that claim in the database) takes only runs that were
    never handed over. ``budget`` (from :func:`republish_budget`) caps, per task type,
    how many runs handed over before are republished; None: no cap but ``batch``.
    """
    runs = store.runs
    # Without republishing (database broker) a duplicate costs one wake-up: no grace.
    grace = UNDISPATCHED_GRACE if republish else 0.0
    never = sa.and_(
        runs.c.dispatched_at.is_(None),
        runs.c.created_at <= now - timedelta(seconds=grace),
    )
    stale = runs.c.dispatched_at < now - timedelta(seconds=redispatch_after)
    postgres = store.is_postgres(session)

    def pick(condition: sa.ColumnElement[bool], limit: int) -> list[int]:
        query = (
            sa.select(runs.c.id)
            .where(PENDING_WHERE, condition)
            .order_by(runs.c.dispatched_at.asc().nulls_first(), runs.c.id)
            .limit(limit)
        )
        if postgres:
            query = query.with_for_update(skip_locked=True)
        return list(session.execute(query).scalars())

    if not republish:
        ids = pick(never, batch)
    elif budget is None:
        ids = pick(sa.or_(never, stale), batch)
    else:
        ids = pick(never, batch)
        for task_type, allowed in sorted(budget.items()):
            room = min(allowed, batch - len(ids))
            if room > 0:
                ids += pick(sa.and_(stale, runs.c.task_type == task_type), room)
    if not ids:
        return []
    rows = session.execute(
        sa.update(runs)
        .where(runs.c.id.in_(ids), PENDING_WHERE)
        .values(dispatched_at=now)
        .returning(runs.c.id, runs.c.priority, runs.c.task_type)
    ).all()
    by_id = {row[0]: Message(row[0], row[1], row[2]) for row in rows}
    return [by_id[run_id] for run_id in ids if run_id in by_id]  # oldest hand-over first
