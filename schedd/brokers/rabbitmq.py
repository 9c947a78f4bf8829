"""The RabbitMQ broker (pika): one durable priority queue per task type.

Contract, beyond :mod:`schedd.brokers.base`:

- Queue ``<namespace>.runs.<task_type>`` is declared durable with ``x-max-priority`` 4
  (idempotently, by every thread that uses it); a message's AMQP priority is
  ``Message.priority`` (0..3), its body the run id; messages are persistent.
- ``publish`` sends a batch in one AMQP transaction on a publishing channel of its own
  (``tx.select``; all messages, then one ``tx.commit``): it returns only when RabbitMQ
  has accepted and stored every message of the batch, with one round trip (and one
  disk sync) per batch instead of one confirm wait per message. A batch that fails
  before the commit is not enqueued at all and is sent again whole; a message returned
  as unroutable (its queue was deleted meanwhile) is declared and sent again.
  When the connection is down it reconnects with backoff for at most
  ``publish_deadline`` seconds, then raises ``Unavailable`` (the outbox sweeper
  republishes later; a duplicate is harmless since workers claim in the database).
  It raises at once when the next attempt the backoff allows falls after the deadline.
- ``consume`` subscribes once per thread with ``basic_qos`` prefetch equal to the largest
  ``max_count`` that thread asked for, and pumps pika's I/O in short slices until it has
  deliveries, ``wake()`` is called, or ``timeout`` passed. It never raises for a broker
  outage: it waits (bounded by ``timeout``) and returns ``[]``, so a worker's claim loop
  simply tries again. Deliveries beyond ``max_count`` stay buffered (unacked, held by
  this consumer) and come back on the thread's next call.
- Reconnection attempts of all the instance's threads (consume, publish, health) share
  one exponential backoff with jitter (:mod:`schedd.brokers.backoff`: 0.2 s doubling
  to 5 s), reset by the first success. A connection that breaks is reopened once at
  once; only a failed attempt starts an outage, logged once at WARNING ("RabbitMQ
  unreachable, retrying with backoff"), then at DEBUG, and its end once at INFO.
- pika's ``BlockingConnection`` is not thread-safe, so each thread has its own
  connection and channel. A delivery must be acked or rejected **on the thread that
  consumed it** (the worker's claim loop does both); doing it elsewhere raises
  ``RuntimeError``. An ack on a connection that has since dropped is skipped: RabbitMQ
  already requeued the message, and its next consumer finds the run claimed and acks.
- Tasks never run on pika's I/O path: callbacks only buffer deliveries. While all of
  a worker's slots are busy its claim loop calls ``keepalive`` about once a second,
  which answers heartbeats, so long runs do not cost the connection. ``keepalive``
  never reconnects: a lost connection is reopened by the next ``consume``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pika
from pika.exceptions import AMQPError

from schedd.brokers.backoff import Reconnect
from schedd.brokers.base import Broker, Delivery, Message
from schedd.config import Settings
from schedd.db import Database
from schedd.errors import Unavailable, first_line

log = logging.getLogger("schedd.brokers.rabbitmq")

MAX_PRIORITY = 4
HEARTBEAT = 30  # seconds; pika answers heartbeats whenever consume pumps I/O
BLOCKED_CONNECTION_TIMEOUT = 30.0  # give up on a connection blocked by a resource alarm
SOCKET_TIMEOUT = 5.0
PUBLISH_DEADLINE = 10.0  # longest publish spends reconnecting before raising Unavailable
MAX_RETURNS = 3  # publish gives up on messages returned as unroutable this many times
SLICE = 0.05  # consume pumps I/O this long at a time, then looks at the wake event


@dataclass(eq=False)
class _Session:
    """One thread's connection and channel, with what it declared and received."""

    connection: Any
    channel: Any
    declared: set[str] = field(default_factory=set)
    consuming: set[str] = field(default_factory=set)
    prefetch: int = 0
    buffer: list[Delivery] = field(default_factory=list)
    publisher: Any = None  # the transactional publishing channel, opened on first use
    returned: list[int] = field(default_factory=list)  # run ids returned as unroutable


@dataclass(frozen=True)
class _Receipt:
    session: _Session
    delivery_tag: int


class RabbitMQBroker(Broker):
    name = "rabbitmq"
    claims_in_database = False

    def __init__(
        self,
        settings: Settings,
        db: Database | None = None,
        *,
        namespace: str | None = None,
        publish_deadline: float = PUBLISH_DEADLINE,
        heartbeat: int = HEARTBEAT,
    ) -> None:
        self.url = settings.message_queue.url
        # None: message_queue.namespace, or the one derived from the database.
        self.namespace = settings.broker_namespace if namespace is None else namespace
        self.publish_deadline = publish_deadline
        self.heartbeat = heartbeat
        self._local = threading.local()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._sessions: list[_Session] = []  # every thread's, for close()
        self._reconnect = Reconnect("RabbitMQ", log)  # shared by the threads

    # --- connection handling ------------------------------------------------------

    def queue_name(self, task_type: str) -> str:
        return f"{self.namespace}.runs.{task_type}"

    def _parameters(self) -> pika.URLParameters:
        params = pika.URLParameters(self.url)
        params.heartbeat = self.heartbeat
        params.blocked_connection_timeout = BLOCKED_CONNECTION_TIMEOUT
        params.socket_timeout = SOCKET_TIMEOUT
        params.connection_attempts = 1
        return params

    def _current(self) -> _Session | None:
        """This thread's session if it is still open (else forget it), or None."""
        current: _Session | None = getattr(self._local, "session", None)
        if current is None:
            return None
        if current.connection.is_open and current.channel.is_open:
            return current
        self._drop()
        self._reconnect.lost("closed while idle")  # pika saw it close without raising
        return None

    def _failed(self, exc: BaseException, *, fresh: bool) -> None:
        """Drop this thread's session after ``exc``: a failed attempt when the session
        was opened for this attempt (``fresh``), else a lost connection."""
        self._drop()
        if fresh:
            self._reconnect.failed(first_line(exc))
        else:
            self._reconnect.lost(first_line(exc))

    def _session(self) -> _Session:
        """This thread's open session, connecting when there is none (may raise AMQPError)."""
        current: _Session | None = getattr(self._local, "session", None)
        if current is not None and current.connection.is_open and current.channel.is_open:
            return current
        self._drop()
        connection = pika.BlockingConnection(self._parameters())
        try:
            channel = connection.channel()  # consuming; publishing has its own
        except (AMQPError, OSError):
            _quietly_close(connection)
            raise
        session = _Session(connection, channel)
        self._local.session = session
        with self._lock:
            self._sessions = [s for s in self._sessions if s.connection.is_open]
            self._sessions.append(session)
        return session

    def _drop(self) -> None:
        """Forget this thread's session; its unacked deliveries go back to the queue."""
        current: _Session | None = getattr(self._local, "session", None)
        self._local.session = None
        if current is not None:
            _quietly_close(current.connection)

    def _declare(self, session: _Session, task_type: str) -> str:
        queue = self.queue_name(task_type)
        if queue not in session.declared:
            session.channel.queue_declare(
                queue, durable=True, arguments={"x-max-priority": MAX_PRIORITY}
            )
            session.declared.add(queue)
        return queue

    # --- Broker -------------------------------------------------------------------

    def publish(self, messages: Sequence[Message]) -> None:
        """Publish persistently with confirms; ``Unavailable`` after ``publish_deadline``."""
        if not messages:
            return
        deadline = time.monotonic() + self.publish_deadline
        remaining = list(messages)
        returns = 0
        while True:
            fresh = self._current() is None
            if fresh:
                pause = self._reconnect.wait_time()
                if time.monotonic() + pause > deadline:
                    raise Unavailable(f"RabbitMQ: cannot publish: {self._reconnect.reason}")
                if pause > 0:
                    time.sleep(pause)
                    continue  # another thread may have succeeded (or failed) meanwhile
            try:
                session = self._session()
                remaining = self._publish_batch(session, remaining)
                if remaining:  # returned as unroutable: declared again, sent again
                    returns += 1
                    if returns > MAX_RETURNS:
                        raise Unavailable(
                            f"RabbitMQ: {len(remaining)} message(s) returned as unroutable "
                            f"{returns} times (their queues keep disappearing)"
                        )
                    continue
                self._reconnect.succeeded()
                return
            except (AMQPError, OSError) as exc:
                self._failed(exc, fresh=fresh)

    def _publish_batch(self, session: _Session, messages: list[Message]) -> list[Message]:
        """Publish ``messages`` in one transaction; the ones RabbitMQ returned."""
        channel = session.publisher
        if channel is None or not channel.is_open:
            channel = session.connection.channel()
            channel.tx_select()
            channel.add_on_return_callback(
                lambda _channel, _method, _properties, body: session.returned.append(int(body))
            )
            session.publisher = channel
        for message in messages:
            channel.basic_publish(
                exchange="",
                routing_key=self._declare(session, message.task_type),
                body=str(message.run_id).encode(),
                properties=pika.BasicProperties(
                    delivery_mode=pika.DeliveryMode.Persistent,
                    priority=max(0, min(MAX_PRIORITY - 1, message.priority)),
                    headers={"traceparent": message.traceparent} if message.traceparent else None,
                ),
                mandatory=True,
            )
        channel.tx_commit()
        # Returns arrive before the commit's answer; this hands them to the callback.
        session.connection.process_data_events(time_limit=0)
        if not session.returned:
            return []
        returned, session.returned = set(session.returned), []
        again = [m for m in messages if m.run_id in returned]
        for message in again:
            session.declared.discard(self.queue_name(message.task_type))
        return again

    def consume(self, task_types: Sequence[str], max_count: int, timeout: float) -> list[Delivery]:
        """Up to ``max_count`` deliveries within ``timeout``; ``[]`` on an outage."""
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            while True:
                fresh = self._current() is None
                if fresh:
                    pause = self._reconnect.wait_time()
                    if pause > 0:
                        # Not yet: wait (for the attempt, a wake, or the timeout).
                        left = deadline - time.monotonic()
                        if left <= pause:
                            self._wake.wait(max(0.0, left))
                            return []
                        if self._wake.wait(pause):
                            return []
                        continue
                try:
                    session = self._subscribe(task_types, max(1, max_count))
                    if fresh:
                        self._reconnect.succeeded()
                    while not session.buffer:
                        left = deadline - time.monotonic()
                        if left <= 0 or self._wake.is_set():
                            break
                        session.connection.process_data_events(time_limit=min(SLICE, left))
                    taken = session.buffer[:max_count]
                    del session.buffer[:max_count]
                    return taken
                except (AMQPError, OSError) as exc:
                    self._failed(exc, fresh=fresh)
                    if deadline <= time.monotonic() or self._wake.is_set():
                        return []
        finally:
            self._wake.clear()

    def _subscribe(self, task_types: Sequence[str], max_count: int) -> _Session:
        session = self._session()
        if max_count > session.prefetch:
            # Applies to consumers started from now on; existing ones keep theirs.
            session.channel.basic_qos(prefetch_count=max_count)
            session.prefetch = max_count
        for task_type in task_types:
            queue = self._declare(session, task_type)
            if queue in session.consuming:
                continue

            def on_message(
                channel: Any, method: Any, properties: Any, body: bytes, *, _t: str = task_type
            ) -> None:
                headers = getattr(properties, "headers", None) or {}
                trace = headers.get("traceparent")
                session.buffer.append(
                    Delivery(
                        int(body),
                        _t,
                        _Receipt(session, method.delivery_tag),
                        trace if isinstance(trace, str) else None,
                    )
                )

            session.channel.basic_consume(queue, on_message, auto_ack=False)
            session.consuming.add(queue)
        return session

    def _settle(self, delivery: Delivery, *, ack: bool, requeue: bool) -> None:
        receipt = delivery.receipt
        if not isinstance(receipt, _Receipt):
            raise ValueError(f"not a RabbitMQ delivery: {delivery!r}")
        current = getattr(self._local, "session", None)
        if receipt.session is not current:
            if receipt.session.connection.is_open:  # another thread's live connection
                raise RuntimeError("a RabbitMQ delivery must be settled on its consuming thread")
            log.info(
                "run %d: its connection is gone, RabbitMQ already requeued it", delivery.run_id
            )
            return
        try:
            if ack:
                receipt.session.channel.basic_ack(receipt.delivery_tag)
            else:
                receipt.session.channel.basic_nack(receipt.delivery_tag, requeue=requeue)
        except (AMQPError, OSError) as exc:
            self._drop()
            log.warning(
                "run %d: cannot settle the delivery (RabbitMQ will requeue it): %s",
                delivery.run_id,
                first_line(exc),
            )

    def ack(self, delivery: Delivery) -> None:
        self._settle(delivery, ack=True, requeue=False)

    def reject(self, delivery: Delivery, *, requeue: bool = True) -> None:
        self._settle(delivery, ack=False, requeue=requeue)

    def backlog(self, task_types: Sequence[str]) -> int | None:
        """Ready messages in these task types' queues (deliveries a consumer holds
        unacked are not counted: at most the consumers' prefetch)."""
        total = 0
        try:
            session = self._session()
            for task_type in task_types:
                # A (re)declaration answers with the queue's message count, and creates
                # the queue if it is missing rather than closing the channel.
                declared = session.channel.queue_declare(
                    self.queue_name(task_type),
                    durable=True,
                    arguments={"x-max-priority": MAX_PRIORITY},
                )
                session.declared.add(self.queue_name(task_type))
                total += int(declared.method.message_count)
        except (AMQPError, OSError) as exc:
            self._failed(exc, fresh=False)
            raise Unavailable(f"RabbitMQ: cannot count messages: {first_line(exc)}") from exc
        return total

    def keepalive(self) -> None:
        """Answer heartbeats (and buffer deliveries within the prefetch) on this thread."""
        current: _Session | None = getattr(self._local, "session", None)
        if current is None:
            return
        try:
            current.connection.process_data_events(time_limit=0)
        except (AMQPError, OSError) as exc:
            self._failed(exc, fresh=False)  # the next consume reconnects (with backoff)

    def wake(self) -> None:
        self._wake.set()

    def health(self) -> None:
        """One probe connection; during an outage, none before the backoff allows."""
        pause = self._reconnect.wait_time()
        if pause > 0:
            raise Unavailable(
                f"RabbitMQ unreachable ({self._reconnect.failures} failed attempt(s), "
                f"next in {pause:.1f} s): {self._reconnect.reason}"
            )
        try:
            connection = pika.BlockingConnection(self._parameters())
            try:
                connection.channel().close()
            finally:
                _quietly_close(connection)
        except (AMQPError, OSError) as exc:
            self._reconnect.failed(first_line(exc))
            raise Unavailable(f"RabbitMQ unreachable: {first_line(exc)}") from exc
        self._reconnect.succeeded()

    def close(self) -> None:
        """Close every thread's connection: call it once the threads using it are done."""
        self._wake.set()
        self._drop()
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            _quietly_close(session.connection)

    def purge(self, task_types: Sequence[str]) -> None:
        """Delete these task types' queues (tests and benchmarks clean up with it)."""
        session = self._session()
        for task_type in task_types:
            session.channel.queue_delete(self.queue_name(task_type))
            session.declared.discard(self.queue_name(task_type))


def _quietly_close(connection: Any) -> None:
    try:
        if connection.is_open:
            connection.close()
    except (AMQPError, OSError) as exc:
        log.debug("closing a RabbitMQ connection: %s", first_line(exc))
