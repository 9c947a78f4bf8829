"""Sending due deliveries: per channel, paced, retried, collapsed into digests.

Per channel at most ``notify.max_per_minute`` messages go out in any minute (counted
from the ``sent_at`` of the channel's deliveries, so the count survives a restart or a
change of sender). When more are due than the minute has room for, the oldest go out
one by one and everything else is collapsed into one digest delivery (a row without an
event; the rows it stands for are ``digested`` and point to it). A delivery that fails
is tried again after ``retry_initial_seconds``, doubling up to ``retry_max_seconds``,
and given up (``failed``) once it is older than ``give_up_after_seconds``.

Sending happens outside any transaction (a receiver may take its timeout to answer);
each outcome is written right after. A sender that dies between a send and that write
sends the message once more later: delivery is at least once, and exactly once
whenever the sender survives.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from schedd.alerts import channels as senders
from schedd.alerts.events import deliveries, events, output_tail
from schedd.alerts.message import Message, digest_message, event_message
from schedd.config import ChannelSettings, Settings
from schedd.db import Database
from schedd.errors import first_line

log = logging.getLogger("schedd.alerts")

PENDING, SENT, FAILED, DIGESTED = "pending", "sent", "failed", "digested"
BATCH = 1000
OUTPUT_EVENTS = ("failed", "recovered", "succeeded")  # messages with the output's end
Sender = Callable[[ChannelSettings, Message, Settings], None]


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0  # attempts that failed (to be retried, or given up)
    given_up: int = 0
    digested: int = 0  # deliveries collapsed into a digest


def backoff(settings: Settings, attempts: int) -> float:
    cfg = settings.notify
    return float(min(cfg.retry_max_seconds, cfg.retry_initial_seconds * 2 ** max(0, attempts - 1)))


def due_channels(db: Database, now: datetime) -> list[str]:
    with db.session() as session:
        return list(
            session.execute(
                sa.select(deliveries.c.channel)
                .where(deliveries.c.state == PENDING, deliveries.c.next_attempt_at <= now)
                .distinct()
            ).scalars()
        )


def deliver_due(
    db: Database,
    settings: Settings,
    now: datetime,
    *,
    send: Sender = senders.send,
    keep_going: Callable[[], bool] = lambda: True,
) -> DeliveryReport:
    """Send what is due on every channel. ``keep_going`` is asked before each send
    (the notifier's lease)."""
    report = DeliveryReport()
    for name in due_channels(db, now):
        _deliver_channel(db, settings, name, now, send, keep_going, report)
    return report


def _deliver_channel(
    db: Database,
    settings: Settings,
    name: str,
    now: datetime,
    send: Sender,
    keep_going: Callable[[], bool],
    report: DeliveryReport,
) -> None:
    channel = settings.notify.channels.get(name)
    with db.session() as session:
        due = session.execute(
            sa.select(deliveries.c.id, deliveries.c.event_id, deliveries.c.created_at)
            .where(
                deliveries.c.channel == name,
                deliveries.c.state == PENDING,
                deliveries.c.next_attempt_at <= now,
            )
            .order_by(deliveries.c.id)
            .limit(BATCH)
        ).all()
        if channel is None:
            session.execute(
                sa.update(deliveries)
                .where(deliveries.c.id.in_([d.id for d in due]))
                .values(
                    state=FAILED,
                    attempts=deliveries.c.attempts + 1,
                    last_error=f"no channel named {name!r} in [notify.channels]",
                )
            )
            report.given_up += len(due)
            return
        sent_recently = session.execute(
            sa.select(sa.func.count()).where(
                deliveries.c.channel == name,
                deliveries.c.state == SENT,
                deliveries.c.sent_at > now - timedelta(seconds=60),
            )
        ).scalar_one()
        budget = settings.notify.max_per_minute - sent_recently
        if budget <= 0 or not due:
            return
        to_send = [(d.id, d.event_id, d.created_at) for d in due]
        if len(due) > budget:
            # Digests already made go first; then the oldest events; the rest collapse.
            digests = [d for d in to_send if d[1] is None]
            singles = [d for d in to_send if d[1] is not None]
            keep = max(0, budget - 1 - len(digests))
            rest = singles[keep:]
            to_send = (digests + singles[:keep])[: budget - 1]
            if rest:
                digest_id = session.execute(
                    sa.insert(deliveries)
                    .values(
                        event_id=None,
                        channel=name,
                        state=PENDING,
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                        digest_count=len(rest),
                    )
                    .returning(deliveries.c.id)
                ).scalar_one()
                for start in range(0, len(rest), 500):
                    session.execute(
                        sa.update(deliveries)
                        .where(deliveries.c.id.in_([d[0] for d in rest[start : start + 500]]))
                        .values(state=DIGESTED, digest_id=digest_id)
                    )
                report.digested += len(rest)
                to_send.append((digest_id, None, now))
    for delivery_id, event_id, created_at in to_send:
        if not keep_going():
            return
        message = _message(db, settings, delivery_id, event_id, name)
        try:
            send(channel, message, settings)
        except senders.SendError as exc:
            _failed(db, settings, delivery_id, created_at, now, str(exc), report)
        except Exception as exc:  # a sender bug must not stop the others
            log.exception("sending delivery %d to channel %s failed", delivery_id, name)
            _failed(db, settings, delivery_id, created_at, now, first_line(exc), report)
        else:
            with db.session() as session:
                session.execute(
                    sa.update(deliveries)
                    .where(deliveries.c.id == delivery_id)
                    .values(
                        state=SENT,
                        sent_at=now,
                        attempts=deliveries.c.attempts + 1,
                        last_error=None,
                    )
                )
            report.sent += 1


def _message(
    db: Database, settings: Settings, delivery_id: int, event_id: int | None, channel: str
) -> Message:
    with db.session() as session:
        if event_id is not None:
            details: dict[str, Any] = session.execute(
                sa.select(events.c.details).where(events.c.id == event_id)
            ).scalar_one()
            run = details.get("run") or {}
            if details.get("event") in OUTPUT_EVENTS and isinstance(run.get("id"), int):
                tail = output_tail(session, run["id"], settings.notify.output_lines)
                details = {**details, "output_tail": tail}
            return event_message(details, delivery_id, channel)
        collapsed = list(
            session.execute(
                sa.select(events.c.details)
                .join(deliveries, deliveries.c.event_id == events.c.id)
                .where(deliveries.c.digest_id == delivery_id)
            ).scalars()
        )
    return digest_message(collapsed, delivery_id, channel)


def _failed(
    db: Database,
    settings: Settings,
    delivery_id: int,
    created_at: datetime,
    now: datetime,
    error: str,
    report: DeliveryReport,
) -> None:
    give_up = now - created_at >= timedelta(seconds=settings.notify.give_up_after_seconds)
    with db.session() as session:
        attempts = session.execute(
            sa.update(deliveries)
            .where(deliveries.c.id == delivery_id)
            .values(
                attempts=deliveries.c.attempts + 1,
                last_error=error[:2000],
                state=FAILED if give_up else PENDING,
            )
            .returning(deliveries.c.attempts)
        ).scalar_one()
        if not give_up:
            session.execute(
                sa.update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(next_attempt_at=now + timedelta(seconds=backoff(settings, attempts)))
            )
    report.failed += 1
    report.given_up += give_up
    log.warning(
        "alert delivery %d to a channel failed (attempt %d%s): %s",
        delivery_id,
        attempts,
        ", giving up" if give_up else "",
        error,
    )
