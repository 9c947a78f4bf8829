"""Alert use cases shared by the API and ``schedctl --db``: the channels, a test
message, and the deliveries with their state."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import sqlalchemy as sa
from sqlmodel import Session

from schedd.alerts import channels as senders
from schedd.alerts.events import deliveries, events, tasks
from schedd.alerts.message import event_message, test_message
from schedd.config import ChannelSettings, Settings
from schedd.errors import InvalidInput, NotFound, Unavailable
from schedd.redact import redact_text
from schedd.schemas import ChannelRead, ChannelTestRead, DeliveryRead, Page
from schedd.services.paging import DEFAULT_PAGE_SIZE, check_page

STATES = ("pending", "sent", "failed", "digested")


def _target(channel: ChannelSettings, env: Mapping[str, str]) -> str:
    if channel.type in ("webhook", "slack"):
        if channel.url is not None:
            return senders.shown_url(channel.url)
        url = env.get(channel.url_env or "", "")
        return senders.shown_url(url) if url else f"(${channel.url_env}, not set)"
    if channel.type == "email":
        port = channel.smtp_port or {"starttls": 587, "tls": 465, "none": 25}[channel.security]
        return f"smtp {channel.smtp_host}:{port} ({channel.security}) to {', '.join(channel.to)}"
    return channel.command[0]


def list_channels(settings: Settings, env: Mapping[str, str] = os.environ) -> list[ChannelRead]:
    found = []
    for name, channel in sorted(settings.notify.channels.items()):
        names = [n for n in (channel.url_env, channel.secret_env, channel.password_env) if n]
        found.append(
            ChannelRead(
                name=name,
                type=channel.type,
                target=_target(channel, env),
                timeout_seconds=channel.timeout_seconds,
                secrets={n: bool(env.get(n)) for n in names},
            )
        )
    return found


def test_channel(settings: Settings, name: str) -> ChannelTestRead:
    """Send a test message now (not through the database); Unavailable with the
    receiver's error when it is not delivered."""
    channel = settings.notify.channels.get(name)
    if channel is None:
        known = ", ".join(sorted(settings.notify.channels)) or "none are configured"
        raise NotFound(f"no channel named {name!r} ([notify.channels]: {known})")
    message = test_message(name, socket.gethostname())
    try:
        senders.send(channel, message, settings)
    except senders.SendError as exc:
        raise Unavailable(f"channel {name}: {redact_text(str(exc))}") from None
    return ChannelTestRead(channel=name, delivered=True, subject=message.subject)


def list_deliveries(
    session: Session,
    *,
    task: str | None = None,
    state: str | None = None,
    channel: str | None = None,
    page: int = 1,
    size: int = DEFAULT_PAGE_SIZE,
) -> Page[DeliveryRead]:
    """Deliveries newest first; ``task`` is an id or a name, ``state`` one of STATES."""
    check_page(page, size)
    if state is not None and state not in STATES:
        raise InvalidInput(f"status: expected one of {', '.join(STATES)}, got {state!r}")
    query = (
        sa.select(
            deliveries,
            events.c.event,
            events.c.task_id,
            events.c.run_id,
            events.c.details,
            tasks.c.name.label("task_name"),
        )
        .outerjoin(events, events.c.id == deliveries.c.event_id)
        .outerjoin(tasks, tasks.c.id == events.c.task_id)
    )
    if state is not None:
        query = query.where(deliveries.c.state == state)
    if channel is not None:
        query = query.where(deliveries.c.channel == channel)
    if task is not None:
        if task.isdigit():
            query = query.where(events.c.task_id == int(task))
        else:
            query = query.where(tasks.c.name == task)
    total = session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    rows = session.execute(
        query.order_by(deliveries.c.id.desc()).offset((page - 1) * size).limit(size)
    ).all()
    items = []
    for row in rows:
        if row.event_id is None:
            subject = f"[sched] DIGEST: {row.digest_count} alert(s)"
            event = "digest"
        else:
            subject = event_message(row.details or {}, row.id, row.channel).subject
            event = row.event
        items.append(
            DeliveryRead(
                id=row.id,
                channel=row.channel,
                state=row.state,
                event=event,
                event_id=row.event_id,
                task_id=row.task_id,
                task_name=row.task_name,
                run_id=row.run_id,
                subject=subject,
                attempts=row.attempts,
                last_error=redact_text(row.last_error) if row.last_error else None,
                created_at=row.created_at,
                next_attempt_at=row.next_attempt_at if row.state == "pending" else None,
                sent_at=row.sent_at,
                digest_id=row.digest_id,
                digest_count=row.digest_count,
            )
        )
    return Page[DeliveryRead](items=items, total=total, page=page, size=size)
