"""The broker contract (schedd.brokers.base) held against the real servers.

Every test runs on each broker it applies to: the database broker (PostgreSQL), which
carries no messages and only wakes workers, and the message brokers, RabbitMQ and
Redis, which carry run ids. Each test uses its own queue/stream namespace and deletes
what it created.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from schedd.brokers.base import Broker, Delivery, Message
from schedd.brokers.database import DatabaseBroker
from schedd.brokers.rabbitmq import RabbitMQBroker
from schedd.brokers.redis import RedisBroker
from schedd.config import load_settings
from schedd.db import create_database
from schedd.errors import Unavailable

pytestmark = pytest.mark.external_service

ALL = ["database", "rabbitmq", "redis"]
CARRIERS = ["rabbitmq", "redis"]
BAD_URLS = {
    "database": "postgresql+psycopg://postgres@127.0.0.1:1/nothing",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:1/",
    "redis": "redis://127.0.0.1:1/0",
}

Factory = Callable[..., Broker]


@pytest.fixture
def make_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """Build brokers of the test's kind in one fresh namespace; close and purge after."""
    kind: str = request.param
    namespace = f"sched-test-{uuid.uuid4().hex[:10]}"
    made: list[Broker] = []
    disposers: list[Callable[[], None]] = []
    url = {
        "rabbitmq": lambda: request.getfixturevalue("rabbitmq_url"),
        "redis": lambda: request.getfixturevalue("redis_url"),
        "database": lambda: "",
    }[kind]()
    pg_url = request.getfixturevalue("pg_url") if kind == "database" else "sqlite://"

    def build(*, bad_url: bool = False, **options: float) -> Broker:
        """Options a kind does not take (claim_idle for RabbitMQ) are ignored."""
        env = {"DATABASE_URL": BAD_URLS["database"] if bad_url else pg_url}
        env["HOME"] = str(tmp_path)
        if kind != "database":
            env["SCHEDD_MESSAGE_QUEUE__TYPE"] = kind
            env["SCHEDD_MESSAGE_QUEUE__URL"] = BAD_URLS[kind] if bad_url else url
        settings = load_settings(env=env)
        broker: Broker
        if kind == "database":
            db = create_database(settings.database.url)
            disposers.append(db.dispose)
            broker = DatabaseBroker(settings, db)
        elif kind == "rabbitmq":
            deadline = options.get("publish_deadline", 10.0)
            broker = RabbitMQBroker(settings, namespace=namespace, publish_deadline=deadline)
        else:
            idle = options.get("claim_idle", 30.0)
            deadline = options.get("publish_deadline", 2.0)
            broker = RedisBroker(
                settings, namespace=namespace, claim_idle=idle, publish_deadline=deadline
            )
        made.append(broker)
        return broker

    yield build
    for broker in made:
        broker.close()
    if kind != "database":
        cleaner = build()
        cleaner.purge(["shell", "reports"])  # type: ignore[attr-defined]
        cleaner.close()
    for dispose in disposers:
        dispose()


def brokers(kinds: list[str]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("make_broker", kinds, indirect=True)


def drain(broker: Broker, expected: int, *, max_count: int = 10) -> list[Delivery]:
    """Consume (and ack) until ``expected`` deliveries came or 5 s passed."""
    got: list[Delivery] = []
    deadline = time.monotonic() + 5
    while len(got) < expected and time.monotonic() < deadline:
        batch = broker.consume(["shell"], max_count, 0.5)
        for delivery in batch:
            broker.ack(delivery)
        got.extend(batch)
    return got


def timed(call: Callable[[], list[Delivery]]) -> tuple[list[Delivery], float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


@brokers(CARRIERS)
def test_a_published_run_id_is_delivered(make_broker: Factory) -> None:
    broker = make_broker()
    broker.publish([Message(41, 1, "shell"), Message(42, 2, "shell")])
    got = drain(broker, 2)
    assert sorted(d.run_id for d in got) == [41, 42]
    assert {d.task_type for d in got} == {"shell"}


@brokers(CARRIERS)
def test_higher_priority_is_delivered_first(make_broker: Factory) -> None:
    broker = make_broker()
    broker.publish([Message(i, i % 4, "shell") for i in range(8)])
    got = drain(broker, 8, max_count=8)
    assert [d.run_id for d in got] == [3, 7, 2, 6, 1, 5, 0, 4]


@brokers(CARRIERS)
def test_consume_returns_no_more_than_max_count(make_broker: Factory) -> None:
    broker = make_broker()
    broker.publish([Message(i, 1, "shell") for i in range(5)])
    first = broker.consume(["shell"], 2, 2.0)
    assert len(first) == 2
    for delivery in first:
        broker.ack(delivery)
    rest = drain(broker, 3, max_count=2)
    assert sorted(d.run_id for d in first + rest) == list(range(5))


@brokers(ALL)
def test_an_idle_consume_returns_within_its_timeout(make_broker: Factory) -> None:
    broker = make_broker()
    broker.consume(["shell"], 4, 0.05)  # connect and subscribe first
    got, waited = timed(lambda: broker.consume(["shell"], 4, 0.6))
    assert got == []
    assert 0.1 < waited < 1.2


@brokers(CARRIERS)
def test_an_acked_delivery_is_gone(make_broker: Factory) -> None:
    broker = make_broker()
    broker.publish([Message(7, 1, "shell")])
    assert [d.run_id for d in drain(broker, 1)] == [7]
    broker.close()
    other = make_broker(claim_idle=0.2)
    time.sleep(0.3)
    assert other.consume(["shell"], 4, 0.5) == []


@brokers(CARRIERS)
def test_a_rejected_delivery_is_delivered_again(make_broker: Factory) -> None:
    broker = make_broker()
    broker.publish([Message(8, 1, "shell")])
    (first,) = broker.consume(["shell"], 1, 2.0)
    broker.reject(first, requeue=True)
    again = drain(broker, 1)
    assert [d.run_id for d in again] == [8]


@brokers(CARRIERS)
def test_a_rejected_delivery_without_requeue_is_dropped(make_broker: Factory) -> None:
    broker = make_broker()
    broker.publish([Message(9, 1, "shell")])
    (first,) = broker.consume(["shell"], 1, 2.0)
    broker.reject(first, requeue=False)
    assert broker.consume(["shell"], 4, 0.5) == []


@brokers(CARRIERS)
def test_unacked_deliveries_of_a_closed_consumer_go_to_another(make_broker: Factory) -> None:
    dying = make_broker(claim_idle=0.3)
    dying.publish([Message(i, 1, "shell") for i in range(3)])
    held: list[Delivery] = []
    deadline = time.monotonic() + 5
    while len(held) < 3 and time.monotonic() < deadline:
        held.extend(dying.consume(["shell"], 3, 0.5))
    assert len(held) == 3
    dying.close()  # never acked
    survivor = make_broker(claim_idle=0.3)
    time.sleep(0.4)
    got = drain(survivor, 3)
    assert sorted(d.run_id for d in got) == [0, 1, 2]


@brokers(ALL)
def test_wake_makes_a_waiting_consume_return(make_broker: Factory) -> None:
    broker = make_broker()
    broker.consume(["shell"], 4, 0.05)
    threading.Timer(0.2, broker.wake).start()
    got, waited = timed(lambda: broker.consume(["shell"], 4, 10))
    assert got == []
    assert waited < 1.5


@brokers(ALL)
def test_a_publish_reaches_a_waiting_consumer_quickly(make_broker: Factory) -> None:
    consumer, publisher = make_broker(), make_broker()
    consumer.consume(["shell"], 4, 0.3)  # subscribed (or LISTENing) after this
    threading.Timer(0.2, publisher.publish, args=([Message(5, 1, "shell")],)).start()
    got, waited = timed(lambda: consumer.consume(["shell"], 4, 10))
    assert waited < 1.5
    if not consumer.claims_in_database:
        assert [d.run_id for d in got] == [5]
        consumer.ack(got[0])


@brokers(ALL)
def test_health_passes_against_the_server(make_broker: Factory) -> None:
    make_broker().health()


@brokers(ALL)
def test_health_raises_unavailable_for_a_bad_url(make_broker: Factory) -> None:
    with pytest.raises(Unavailable):
        make_broker(bad_url=True).health()


@brokers(CARRIERS)
def test_publish_raises_unavailable_for_a_bad_url(make_broker: Factory) -> None:
    broker = make_broker(bad_url=True, publish_deadline=0.5)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        broker.publish([Message(1, 1, "shell")])
    assert time.monotonic() - started < 10
    got, waited = timed(lambda: broker.consume(["shell"], 1, 0.5))
    assert got == [] and waited < 3


@brokers(CARRIERS)
def test_backlog_counts_the_messages_not_yet_acked_per_task_type(make_broker: Factory) -> None:
    broker = make_broker()
    assert broker.backlog(["shell"]) == 0
    broker.publish([Message(i, i % 4, "shell") for i in range(1, 6)] + [Message(9, 1, "other")])
    assert broker.backlog(["shell"]) == 5
    assert broker.backlog(["shell", "other"]) == 6
    consumer = make_broker()
    assert len(drain(consumer, 2, max_count=2)) == 2  # acked
    consumer.close()  # what it held unacked goes back to the queue
    assert broker.backlog(["shell"]) == 3


@brokers(["database"])
def test_a_broker_that_carries_no_messages_has_no_backlog_to_tell(make_broker: Factory) -> None:
    assert make_broker().backlog(["shell"]) is None


@brokers(CARRIERS)
def test_backlog_raises_unavailable_for_a_bad_url(make_broker: Factory) -> None:
    with pytest.raises(Unavailable):
        make_broker(bad_url=True).backlog(["shell"])


@brokers(CARRIERS)
def test_task_types_are_kept_apart(make_broker: Factory) -> None:
    broker = make_broker()
    broker.publish([Message(1, 1, "reports"), Message(2, 1, "shell")])
    assert [d.run_id for d in drain(broker, 1)] == [2]
    assert broker.consume(["shell"], 4, 0.3) == []
    reports = broker.consume(["reports"], 4, 2.0)
    assert [(d.run_id, d.task_type) for d in reports] == [(1, "reports")]
    broker.ack(reports[0])


def test_keepalive_keeps_a_busy_rabbitmq_consumer_connected(
    rabbitmq_url: str, tmp_path: Path
) -> None:
    """With 1 s heartbeats, a consumer that only calls keepalive for 4 s keeps its
    connection (and so its subscription): a later publish reaches it on that session."""
    env = {
        "HOME": str(tmp_path),
        "SCHEDD_MESSAGE_QUEUE__TYPE": "rabbitmq",
        "SCHEDD_MESSAGE_QUEUE__URL": rabbitmq_url,
    }
    settings = load_settings(env=env)
    namespace = f"sched-test-{uuid.uuid4().hex[:10]}"
    consumer = RabbitMQBroker(settings, namespace=namespace, heartbeat=1)
    publisher = RabbitMQBroker(settings, namespace=namespace)
    try:
        assert consumer.consume(["shell"], 2, 0.1) == []
        connection = consumer._local.session.connection
        for _ in range(16):
            consumer.keepalive()
            time.sleep(0.25)
        assert connection.is_open
        publisher.publish([Message(3, 1, "shell")])
        got = consumer.consume(["shell"], 2, 2.0)
        assert [d.run_id for d in got] == [3]
        consumer.ack(got[0])
        assert consumer._local.session.connection is connection
    finally:
        consumer.close()
        publisher.purge(["shell"])
        publisher.close()
