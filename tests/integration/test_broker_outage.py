"""A broker restart while workers consume: backoff, one warning per outage, recovery.

Two consumers (two workers' broker instances) call ``consume(..., timeout=1.0)`` in a
loop, as the claim loop does, while the real RabbitMQ or Redis is stopped for a few
seconds; meanwhile a third instance is asked for ``health`` and ``publish`` again and
again. The ``schedd.brokers`` records are counted per thread (each instance is used by
one thread): at most two warnings each for the outage, one "reachable again" line,
consume calls that keep their timeout, few connection attempts, and a run id
published after the restart is consumed.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from schedd.brokers.base import Broker, Message
from schedd.brokers.rabbitmq import RabbitMQBroker
from schedd.brokers.redis import RedisBroker
from schedd.config import load_settings
from schedd.errors import Unavailable
from tests.integration.test_broker_end_to_end import (
    start_rabbitmq,
    start_redis,
    stop_rabbitmq,
    stop_redis,
)

pytestmark = [pytest.mark.external_service, pytest.mark.slow]

TIMEOUT = 1.0  # the worker's IDLE_WAIT
OUTAGE = 4.0  # seconds the broker stays down once stopped
RECOVERED = re.compile(r"reachable again after (\d+) failed attempts? over ([\d.]+) s")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def warnings_by_thread(self) -> Counter[str]:
        return Counter(r.threadName for r in self.records if r.levelno >= logging.WARNING)

    def messages(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("schedd.brokers")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@dataclass
class Consumer:
    """A worker's claim loop, reduced to consume and ack."""

    broker: Broker
    name: str
    got: list[int] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        thread.start()
        return thread

    def _loop(self) -> None:
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                deliveries = self.broker.consume(["shell"], 4, TIMEOUT)
                self.durations.append(time.monotonic() - started)
                for delivery in deliveries:
                    self.got.append(delivery.run_id)
                    self.broker.ack(delivery)
        except BaseException as exc:  # the test asserts there is none
            self.errors.append(exc)


def make(kind: str, url: str, home: Path, namespace: str) -> Broker:
    env = {
        "HOME": str(home),
        "SCHEDD_MESSAGE_QUEUE__TYPE": kind,
        "SCHEDD_MESSAGE_QUEUE__URL": url,
    }
    settings = load_settings(env=env)
    if kind == "rabbitmq":
        return RabbitMQBroker(settings, namespace=namespace, publish_deadline=1.0)
    return RedisBroker(settings, namespace=namespace, publish_deadline=1.0)


def restart_during_consume(
    kind: str,
    url: str,
    home: Path,
    records: Records,
    stop: Callable[[], None],
    start: Callable[[], None],
) -> None:
    namespace = f"sched-outage-{uuid.uuid4().hex[:8]}"
    consumers = [Consumer(make(kind, url, home, namespace), f"consumer-{i}") for i in range(2)]
    other = make(kind, url, home, namespace)  # health and publish, on the test's thread
    threads: list[threading.Thread] = []
    probes = 0
    try:
        for consumer in consumers:
            consumer.broker.consume(["shell"], 4, 0.1)  # subscribed before the outage
            threads.append(consumer.start())
        other.health()
        time.sleep(0.3)
        try:
            stop()
            down = time.monotonic()
            while time.monotonic() - down < OUTAGE:
                with pytest.raises(Unavailable):
                    other.health()
                with pytest.raises(Unavailable):
                    other.publish([Message(1, 1, "shell")])
                probes += 1
                time.sleep(0.05)
        finally:
            start()
        assert probes >= 3
        up = time.monotonic()
        published = False
        while not published and time.monotonic() - up < 10:
            try:
                other.publish([Message(777, 1, "shell")])
                published = True
            except Unavailable:
                time.sleep(0.2)
        assert published, "no publish within 10 s of the restart"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(777 in c.got for c in consumers):
            time.sleep(0.05)
        assert any(777 in c.got for c in consumers), "consumption did not resume"
    finally:
        for consumer in consumers:
            consumer.stop.set()
        for thread in threads:
            thread.join(10)
        try:
            other.purge(["shell"])  # type: ignore[attr-defined]
        finally:
            other.close()
            for consumer in consumers:
                consumer.broker.close()

    for consumer in consumers:
        assert consumer.errors == []
        # consume kept its timeout contract throughout (a refused connection is quick).
        assert max(consumer.durations) < TIMEOUT + 0.5, max(consumer.durations)

    broker = "RabbitMQ" if kind == "rabbitmq" else "Redis"
    by_thread = records.warnings_by_thread()
    assert set(by_thread) <= {c.name for c in consumers} | {threading.current_thread().name}
    assert all(n <= 2 for n in by_thread.values()), records.messages(logging.WARNING)
    for consumer in consumers:  # each consumer saw the outage, and said so once
        assert by_thread[consumer.name] >= 1, records.messages(logging.WARNING)
    warnings = records.messages(logging.WARNING)
    assert all(m.startswith(f"{broker} unreachable, retrying with backoff: ") for m in warnings)

    # One recovery line per instance that saw the outage, with few attempts: the
    # backoff, not a reconnect loop several times a second.
    infos = records.messages(logging.INFO)
    assert all(
        RECOVERED.search(m) or m.startswith(f"{broker} connection lost and reopened: ")
        for m in infos
    ), infos
    by_thread_info = Counter(r.threadName for r in records.records if r.levelno == logging.INFO)
    assert all(n <= 2 for n in by_thread_info.values()), infos
    recoveries = [RECOVERED.search(m) for m in infos]
    found = [m for m in recoveries if m is not None]
    assert 1 <= len(found) <= 3, records.messages(logging.INFO)
    for match in found:
        attempts, seconds = int(match.group(1)), float(match.group(2))
        assert attempts <= 5 + seconds / 2.0, match.group(0)


@pytest.mark.broker_restart
def test_a_rabbitmq_restart_warns_once_per_instance_and_consumption_resumes(
    rabbitmq_url: str, tmp_path: Path, records: Records
) -> None:
    try:
        restart_during_consume(
            "rabbitmq", rabbitmq_url, tmp_path, records, stop_rabbitmq, start_rabbitmq
        )
    finally:
        start_rabbitmq()  # idempotent: the service is up for the tests after this one


@pytest.mark.broker_restart
def test_a_redis_restart_warns_once_per_instance_and_consumption_resumes(
    redis_url: str, tmp_path: Path, records: Records
) -> None:
    try:
        restart_during_consume("redis", redis_url, tmp_path, records, stop_redis, start_redis)
    finally:
        start_redis()  # idempotent: the service is up for the tests after this one
