"""Silence and slowness rules over a real database and receiver, on a pinned clock:
long_running, and absent (the dead-man's switch) by expect_every and by grace."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from schedd.alerts.events import NewEvent, record
from schedd.alerts.notifier import Notifier
from schedd.db import Database, create_database
from schedd.models import NotifyDelivery, NotifyEvent
from schedd.scheduler import passes
from schedd.scheduler.passes import Scheduler
from schedd.types import utcnow
from tests.alertkit import SECRET, SECRET_ENV, Receiver, add_ended_runs, hook, notify_settings
from tests.schedctlkit import migrated_sqlite
from tests.scheduler_support import add_run, at, new_task


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """SQLite only: the SQL these tests reach is covered on both backends by
    test_alerts_delivery.py; this keeps the suite's time down."""
    database = create_database(migrated_sqlite(tmp_path / "sched.db"))
    yield database
    database.dispose()


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


def notifier(db: Database, receiver: Receiver) -> Notifier:
    return Notifier(db, notify_settings({"hook": hook(receiver.url)}))


def events(receiver: Receiver) -> list[tuple[str, str]]:
    return [(m.json["event"], m.json["task"]["name"]) for m in receiver.messages()]


def test_a_run_past_warn_after_seconds_is_reported_once(db: Database, receiver: Receiver) -> None:
    rules = {"long_running": ["hook"], "warn_after_seconds": 60}
    slow = new_task(db, "slow", notify=rules)
    fresh = new_task(db, "fresh", notify=rules)
    run_id = add_run(db, slow, status="running", started_at=at(-120))
    add_run(db, fresh, status="running", started_at=at(-30))
    alerts = notifier(db, receiver)

    alerts.run_pass(at(0))
    alerts.run_pass(at(1))

    assert events(receiver) == [("long_running", "slow")]
    body = receiver.messages()[0].json
    assert body["run"]["id"] == run_id and body["running_seconds"] == 120.0


def test_absent_by_expect_every_fires_once_per_silence(db: Database, receiver: Receiver) -> None:
    task_id = new_task(
        db,
        "heartbeat",
        schedule=None,
        now=at(-7200),
        notify={"absent": ["hook"], "expect_every": "1h"},
    )
    alerts = notifier(db, receiver)

    alerts.run_pass(at(0))
    alerts.run_pass(at(60))
    assert events(receiver) == [("absent", "heartbeat")]

    add_ended_runs(db, task_id, 1, status="completed", at=at(100))
    alerts.run_pass(at(200))  # it ran: silent no more
    assert len(receiver.messages()) == 1
    alerts.run_pass(at(100 + 3600 + 5))  # an hour without a completion again
    assert events(receiver) == [("absent", "heartbeat")] * 2
    assert "expect_every" in receiver.messages()[1].json["reason"]


def test_absent_by_grace_fires_for_a_paused_nightly_task(db: Database, receiver: Receiver) -> None:
    # Created yesterday at 12:00; the nightly 02:00 run never completed (it was paused).
    new_task(
        db,
        "backup",
        schedule="0 0 2 * * *",
        now=at(-86400),
        status="paused",
        notify={"absent": ["hook"], "grace": "2h"},
    )
    on_time = new_task(
        db,
        "on-time",
        schedule="0 0 2 * * *",
        now=at(-86400),
        notify={"absent": ["hook"], "grace": "2h"},
    )
    add_ended_runs(db, on_time, 1, status="completed", at=at(-9 * 3600))  # 03:00 today
    alerts = notifier(db, receiver)

    alerts.run_pass(at(-9 * 3600 + 60))  # 03:01: within the grace
    assert receiver.messages() == []
    alerts.run_pass(at(0))  # 12:00: 02:00 + 2h has passed without a completed run

    assert events(receiver) == [("absent", "backup")]
    body = receiver.messages()[0].json
    assert body["status"] == "paused"
    assert "grace 2h" in body["reason"]


def test_missed_fire_times_are_one_alert_per_fire(db: Database, receiver: Receiver) -> None:
    settings = notify_settings({"hook": hook(receiver.url)})
    new_task(
        db,
        "minutely",
        schedule="0 * * * * *",
        now=at(-3600),
        misfire_policy="skip",
        notify={"missed": ["hook"]},
    )
    new_task(db, "quiet", schedule="0 * * * * *", now=at(-3600), misfire_policy="skip")
    scheduler = Scheduler(db, None, settings, rand=lambda: 0.0)

    scheduler.run_pass(at(0))
    scheduler.run_pass(at(1))
    Notifier(db, settings).run_pass(at(2))

    assert events(receiver) == [("missed", "minutely")]
    body = receiver.messages()[0].json
    # 60 due minutes; the last two are within misfire_grace_seconds (60 s).
    assert body["missed"] == 58 and body["misfire_policy"] == "skip"


def test_absent_fires_when_no_worker_serves_the_task(db: Database, receiver: Receiver) -> None:
    settings = notify_settings({"hook": hook(receiver.url)})
    new_task(
        db,
        "orphan",
        schedule="0 */10 * * * *",
        now=at(-3600),
        task_type="gpu",
        notify={"absent": ["hook"], "grace": "15m"},
    )
    scheduler = Scheduler(db, None, settings, rand=lambda: 0.0)
    alerts = Notifier(db, settings)

    for minute in range(-50, 1, 10):  # the scheduler fires; nothing ever claims the runs
        scheduler.run_pass(at(minute * 60))
        alerts.run_pass(at(minute * 60 + 1))

    assert events(receiver) == [("absent", "orphan")]
    assert "grace 15m" in receiver.messages()[0].json["reason"]


def test_old_alerts_go_with_the_system_events(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = new_task(db, "t", schedule=None)
    old, recent = utcnow() - timedelta(days=20), utcnow() - timedelta(days=1)
    with db.session() as session:
        for key, when in (("old", old), ("recent", recent)):
            record(session, [NewEvent(key, "failed", task_id, None, {}, ["hook"])], when)
    monkeypatch.setattr(passes, "RETENTION_FIRST_DELAY", 0.0)
    settings = notify_settings({"hook": hook("http://127.0.0.1:9/")})

    Scheduler(db, None, settings, rand=lambda: 0.0).run_pass()

    with db.session() as session:
        keys = session.execute(sa.select(NotifyEvent.key)).scalars().all()
        deliveries = session.execute(sa.select(sa.func.count()).select_from(NotifyDelivery))
        assert keys == ["recent"] and deliveries.scalar_one() == 1
