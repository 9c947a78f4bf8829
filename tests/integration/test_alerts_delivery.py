"""Alerts end to end over a real database and a real HTTP receiver on loopback:
events from run outcomes, signed webhooks, once-only delivery, retry while the
receiver is down, digests under max_per_minute, and two notifiers on one database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from schedd.alerts.notifier import Notifier
from schedd.db import Database, create_database
from schedd.models import NotifyDelivery, NotifyEvent
from tests.alertkit import (
    SECRET,
    SECRET_ENV,
    Receiver,
    add_ended_runs,
    add_output,
    delivery_states,
    free_port,
    hook,
    notify_settings,
)
from tests.schedctlkit import migrated_sqlite
from tests.scheduler_support import NOW, at, new_task

events_table = NotifyEvent.__table__  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """For tests whose SQL the two-backend tests here already cover."""
    database = create_database(migrated_sqlite(tmp_path / "sched.db"))
    yield database
    database.dispose()


def notifier(db: Database, receiver: Receiver, **notify: object) -> Notifier:
    settings = notify_settings({"hook": hook(receiver.url)}, **notify)
    return Notifier(db, settings)


def test_a_failed_run_is_one_signed_message_with_what_an_operator_needs(
    db: Database, receiver: Receiver
) -> None:
    task_id = new_task(db, "backup", notify={"failed": ["hook"]})
    (run_id,) = add_ended_runs(db, task_id, 1, status="failed", at=at(-5), worker_id="w1")
    add_output(db, run_id, "".join(f"line {i}\n" for i in range(100)))
    alerts = notifier(db, receiver)

    report = alerts.run_pass(at(1))
    alerts.run_pass(at(2))

    assert report.recorded == 1
    (message,) = receiver.messages()
    assert message.signed()
    assert not message.signed("another-secret")
    body = message.json
    assert body["event"] == "failed"
    assert body["task"] == {"id": task_id, "name": "backup"}
    assert body["run"]["id"] == run_id
    assert body["run"]["exit_code"] == 2
    assert body["run"]["duration_seconds"] == 1.5
    assert body["logs_command"] == f"schedctl run logs {run_id}"
    assert body["output_tail"].splitlines() == [f"line {i}" for i in range(80, 100)]
    assert "FAILED: backup" in body["subject"]
    assert message.headers["x-sched-event"] == "failed"
    assert delivery_states(db) == {"sent": 1}


def test_only_the_last_attempt_alerts_and_the_next_completion_recovers(
    db: Database, receiver: Receiver
) -> None:
    task_id = new_task(
        db, "sync", retry_count=1, notify={"failed": ["hook"], "recovered": ["hook"]}
    )
    add_ended_runs(db, task_id, 1, status="failed", at=at(-30), retry_count=0)
    alerts = notifier(db, receiver)
    alerts.run_pass(at(-20))
    assert receiver.messages() == []  # it will be retried: no alert yet

    add_ended_runs(db, task_id, 1, status="timeout", at=at(-10), retry_count=1)
    alerts.run_pass(at(-9))
    add_ended_runs(db, task_id, 2, status="completed", at=at(-5))
    alerts.run_pass(at(1))
    alerts.run_pass(at(2))

    assert [m.json["event"] for m in receiver.messages()] == ["failed", "recovered"]
    assert receiver.messages()[0].json["run"]["status"] == "timeout"


def test_a_receiver_down_for_10_seconds_gets_the_alert_after_exactly_once(db: Database) -> None:
    port = free_port()
    down = Receiver(port=port)  # not started: connections are refused
    task_id = new_task(db, "nightly", notify={"failed": ["hook"]})
    add_ended_runs(db, task_id, 1, status="lost", at=at(0))
    alerts = notifier(db, down)

    for second in range(1, 11):  # ten seconds of passes (the clock is the notifier's)
        alerts.run_pass(at(second))
    assert delivery_states(db) == {"pending": 1}
    with db.session() as session:
        error = session.execute(sa.select(NotifyDelivery.last_error)).scalar_one()
    assert error is not None and "127.0.0.1" in error and "ConnectError" in error

    back = Receiver(port=port).start()
    try:
        for second in range(11, 20):
            alerts.run_pass(at(second))
        assert len(back.messages()) == 1
        assert back.messages()[0].json["run"]["status"] == "lost"
        assert delivery_states(db) == {"sent": 1}
    finally:
        back.stop()


def test_a_storm_is_at_most_max_per_minute_messages_and_a_digest_counts_the_rest(
    db: Database, receiver: Receiver
) -> None:
    task_id = new_task(db, "flaky", notify={"failed": ["hook"]})
    add_ended_runs(db, task_id, 1000, status="failed", at=at(0))
    alerts = notifier(db, receiver, max_per_minute=10)

    for second in range(1, 60, 5):  # a minute of passes
        alerts.run_pass(at(second))
    assert len(receiver.messages()) == 10  # the first minute
    for second in range(61, 240, 30):  # three more minutes: the rest, as a digest
        alerts.run_pass(at(second))

    messages = [m.json for m in receiver.messages()]
    assert len(messages) <= 10 * 4
    digests = [m for m in messages if m["event"] == "digest"]
    singles = [m for m in messages if m["event"] == "failed"]
    assert len(singles) + sum(d["count"] for d in digests) == 1000
    assert digests and digests[0]["tasks"] == {"flaky": digests[0]["count"]}
    states = delivery_states(db)
    assert states == {"digested": 1000 - len(singles), "sent": len(messages)}


def test_a_webhook_to_a_private_address_needs_http_allow(
    sqlite_db: Database, receiver: Receiver
) -> None:
    db = sqlite_db
    task_id = new_task(db, "t", notify={"failed": ["hook"]})
    add_ended_runs(db, task_id, 1, status="failed", at=at(0))
    alerts = notifier(db, receiver, http_allow=[])

    alerts.run_pass(at(1))

    assert receiver.messages() == []
    with db.session() as session:
        error = session.execute(sa.select(NotifyDelivery.last_error)).scalar_one()
    assert "loopback address 127.0.0.1" in error and "notify.http_allow" in error


@pytest.mark.external_service
def test_two_notifiers_send_one_alert_per_event(pg_url: str, receiver: Receiver) -> None:
    dbs = [create_database(pg_url, max_connections=3) for _ in range(2)]
    task_id = new_task(dbs[0], "shared", notify={"failed": ["hook"]}, now=NOW)
    run_ids = add_ended_runs(dbs[0], task_id, 20, status="failed", at=dbs[0].now())
    workers = [notifier(db, receiver, max_per_minute=1000) for db in dbs]
    for worker in workers:
        worker.start()
    try:
        deadline = time.monotonic() + 10
        while len(receiver.messages()) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Both keep passing for a while: nothing more may arrive.
        time.sleep(0.5)
        # The second one takes over when the first stops, and sends nothing again.
        holder = next(w for w in workers if w.lease.held)
        holder.stop()
        holder.join(5)
        more = add_ended_runs(dbs[0], task_id, 1, status="failed", at=dbs[0].now())
        deadline = time.monotonic() + 10
        while len(receiver.messages()) < 21 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.join(5)
    sent = sorted(m.json["run"]["id"] for m in receiver.messages())
    assert sent == run_ids + more
    with dbs[0].session() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(events_table)).scalar() == 21
    for db in dbs:
        db.dispose()


def test_rules_come_from_notify_default_unless_the_task_says_otherwise(
    sqlite_db: Database, receiver: Receiver
) -> None:
    db = sqlite_db
    loud = new_task(db, "loud")
    quiet = new_task(db, "quiet", notify={"failed": []})
    add_ended_runs(db, loud, 1, status="failed", at=at(0))
    add_ended_runs(db, quiet, 1, status="failed", at=at(0))
    settings = notify_settings({"hook": hook(receiver.url)}, default={"failed": ["hook"]})

    Notifier(db, settings).run_pass(at(1))

    assert [m.json["task"]["name"] for m in receiver.messages()] == ["loud"]
