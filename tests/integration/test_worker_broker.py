"""The database broker: pending rows are the queue, publish only wakes the workers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from schedd.brokers.base import Message
from schedd.brokers.database import POLL_INTERVAL, DatabaseBroker
from schedd.db import Database, create_database
from tests.workerkit import (
    add_run,
    db_url,
    make_task,
    running_worker,
    settings_for,
    wait_for_status,
)


@pytest.fixture
def broker(db: Database, tmp_path: Path) -> Iterator[DatabaseBroker]:
    broker = DatabaseBroker(settings_for(db_url(db), tmp_path), db)
    yield broker
    broker.close()


def timed_consume(broker: DatabaseBroker, timeout: float) -> tuple[list[object], float]:
    started = time.monotonic()
    deliveries = broker.consume(["shell"], 4, timeout)
    return list(deliveries), time.monotonic() - started


def test_the_database_broker_claims_in_the_database_and_delivers_nothing(
    broker: DatabaseBroker,
) -> None:
    assert broker.claims_in_database
    deliveries, _ = timed_consume(broker, 0.05)
    assert deliveries == []
    broker.health()


def test_consume_returns_at_once_after_a_publish_in_the_same_process(
    broker: DatabaseBroker,
) -> None:
    timed_consume(broker, 0.05)  # starts the listener on PostgreSQL
    threading.Timer(0.1, broker.publish, args=([Message(1, 1, "shell")],)).start()
    _, waited = timed_consume(broker, 5)
    assert waited < 1


def test_wake_ends_a_wait(broker: DatabaseBroker) -> None:
    threading.Timer(0.1, broker.wake).start()
    _, waited = timed_consume(broker, 5)
    assert waited < 1


def test_an_idle_consume_on_sqlite_returns_within_the_polling_interval(
    sqlite_url: str, tmp_path: Path
) -> None:
    db = create_database(sqlite_url)
    broker = DatabaseBroker(settings_for(sqlite_url, tmp_path), db)
    _, waited = timed_consume(broker, 5)
    broker.close()
    db.dispose()
    assert waited < POLL_INTERVAL + 0.2


@pytest.mark.external_service
def test_a_notify_from_another_process_wakes_a_waiting_consumer(
    pg_url: str, tmp_path: Path
) -> None:
    db_a, db_b = create_database(pg_url), create_database(pg_url)
    consumer = DatabaseBroker(settings_for(pg_url, tmp_path), db_a)
    publisher = DatabaseBroker(settings_for(pg_url, tmp_path), db_b)
    try:
        timed_consume(consumer, 0.5)  # the LISTEN connection is up after this
        threading.Timer(0.2, publisher.publish, args=([Message(1, 1, "shell")],)).start()
        _, waited = timed_consume(consumer, 5)
        assert waited < 1.0
        threading.Timer(0.2, publisher.publish, args=([Message(2, 1, "reports")],)).start()
        _, waited = timed_consume(consumer, 1.5)  # a task type it does not serve
        assert waited > 1.0
    finally:
        consumer.close()
        publisher.close()
        db_a.dispose()
        db_b.dispose()


def test_a_published_run_reaches_an_idle_worker_quickly(db: Database, tmp_path: Path) -> None:
    task = make_task(db, "true")
    with running_worker(db, tmp_path) as worker:
        time.sleep(0.3)  # idle, waiting for a hint
        run_id = add_run(db, task)
        published = time.monotonic()
        worker.ctx.broker.publish([Message(run_id, 1, "shell")])
        wait_for_status(db, run_id, {"running", "completed"}, 5)
        assert time.monotonic() - published < 0.5
