"""The Redis broker (redis-py): one stream per task type and priority, one consumer group.

Contract, beyond :mod:`schedd.brokers.base`:

- Stream ``<namespace>:runs:<task_type>:<priority>`` (priority 0..3) holds entries
  ``{run_id: <id>}``; the consumer group ``<namespace>-workers`` is created idempotently
  (``MKSTREAM``), and again when a Redis restart without persistence lost it.
- ``publish`` XADDs in one pipeline with ``MAXLEN ~ maxlen`` trimming and returns once
  Redis answered; when Redis cannot be reached it retries with backoff for at most
  ``publish_deadline`` seconds, then raises ``Unavailable`` (at once when the next
  attempt the backoff allows falls after the deadline). Trimming can drop entries never
  delivered when a stream outgrows ``maxlen``: the outbox sweeper republishes their runs.
- ``consume`` first takes over entries idle longer than ``claim_idle`` seconds in other
  consumers' pending lists (XAUTOCLAIM: a dead worker's deliveries), then reads new
  entries, higher priority streams first, then blocks in short slices (checking
  ``wake()``) until ``timeout``. It never raises for an outage: it waits and returns
  ``[]``. Entries read beyond ``max_count`` (a blocking read over several streams) stay
  buffered for the same thread's next call.
- Attempts to reach Redis after a failure (consume, publish, health; all threads of the
  instance) share one exponential backoff with jitter (:mod:`schedd.brokers.backoff`:
  0.2 s doubling to 5 s), reset by the first answer. redis-py itself only retries a
  command once, at once, on a fresh connection (a pooled connection a Redis restart
  closed). An outage is logged once at WARNING ("Redis unreachable, retrying with
  backoff"), then at DEBUG, and its end once at INFO.
- ``ack`` is XACK + XDEL; ``reject(requeue=True)`` re-XADDs the run id then acks.
  The worker acks right after the run is claimed in the database (never after the
  run), so a live consumer holds an entry while it claims it, or, buffered, until it
  has a free slot; ``claim_idle`` (``[message_queue] claim_idle_seconds``) bounds how
  long a dead one keeps it. A takeover from a live consumer costs one redundant claim
  attempt, never a second execution: the database claim decides.
- Each thread is its own consumer, named ``<host>-<pid>-<thread id>``; names of dead
  consumers stay in the group (harmless: their pending entries are auto-claimed).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from schedd.brokers.backoff import Reconnect
from schedd.brokers.base import Broker, Delivery, Message
from schedd.config import Settings
from schedd.db import Database
from schedd.errors import Unavailable, first_line

log = logging.getLogger("schedd.brokers.redis")

PRIORITIES = (3, 2, 1, 0)  # read order: critical first
MAXLEN = 100_000  # approximate cap per stream
AUTOCLAIM_EVERY = 1.0  # seconds between XAUTOCLAIM sweeps of one thread
SLICE = 0.1  # blocking reads last this long, then the wake event is looked at
SOCKET_TIMEOUT = 5.0
PUBLISH_DEADLINE = 2.0  # longest publish spends retrying before raising Unavailable


class RedisBroker(Broker):
    name = "redis"
    claims_in_database = False

    def __init__(
        self,
        settings: Settings,
        db: Database | None = None,
        *,
        namespace: str | None = None,
        claim_idle: float | None = None,
        maxlen: int = MAXLEN,
        publish_deadline: float = PUBLISH_DEADLINE,
    ) -> None:
        self.url = settings.message_queue.url
        # None: message_queue.namespace, or the one derived from the database.
        self.namespace = settings.broker_namespace if namespace is None else namespace
        self.group = f"{self.namespace}-workers"
        # Seconds a delivery may sit unacked before another consumer takes it.
        self.claim_idle = (
            settings.message_queue.claim_idle_seconds if claim_idle is None else claim_idle
        )
        self.maxlen = maxlen
        self.publish_deadline = publish_deadline
        self.client = self._client(self.url)
        self._reconnect = Reconnect("Redis", log)  # shared by the threads
        self._groups: set[str] = set()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._wake = threading.Event()

    @staticmethod
    def _client(url: str) -> redis.Redis:
        return redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            # Once, at once: a pooled connection closed by a Redis restart is replaced
            # transparently; an outage is the broker's backoff's business (a command
            # retried with sleeps would keep consume past its timeout).
            retry=Retry(NoBackoff(), retries=1),
            retry_on_error=[RedisConnectionError],
            health_check_interval=15,
        )

    def stream(self, task_type: str, priority: int) -> str:
        return f"{self.namespace}:runs:{task_type}:{priority}"

    def _streams(self, task_types: Sequence[str]) -> list[str]:
        return [self.stream(t, p) for p in PRIORITIES for t in task_types]

    def _ensure_groups(self, streams: Sequence[str]) -> None:
        for name in streams:
            if name in self._groups:
                continue
            try:
                self.client.xgroup_create(name, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            with self._lock:
                self._groups.add(name)

    def _forget_groups(self) -> None:
        with self._lock:
            self._groups.clear()

    @property
    def consumer(self) -> str:
        return f"{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}"

    # --- Broker -------------------------------------------------------------------

    def publish(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        targets = [self.stream(m.task_type, _rank(m.priority)) for m in messages]
        deadline = time.monotonic() + self.publish_deadline
        while True:
            pause = self._reconnect.wait_time()
            if time.monotonic() + pause > deadline:
                raise Unavailable(f"Redis: cannot publish: {self._reconnect.reason}")
            if pause > 0:
                time.sleep(pause)
                continue  # another thread may have succeeded (or failed) meanwhile
            try:
                self._ensure_groups(sorted(set(targets)))
                pipe = self.client.pipeline(transaction=False)
                for message, target in zip(messages, targets, strict=True):
                    pipe.xadd(
                        target,
                        _fields(message.run_id, message.traceparent),
                        maxlen=self.maxlen,
                        approximate=True,
                    )
                pipe.execute()
            except RedisError as exc:
                self._forget_groups()
                self._reconnect.failed(first_line(exc))
                continue
            self._reconnect.succeeded()
            return

    def consume(self, task_types: Sequence[str], max_count: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + max(0.0, timeout)
        max_count = max(1, max_count)
        buffer: list[Delivery] = self._buffer()
        streams = self._streams(task_types)
        try:
            while len(buffer) < max_count:
                pause = self._reconnect.wait_time()
                if pause > 0:
                    # Not yet: wait (for the attempt, a wake, or the timeout).
                    left = deadline - time.monotonic()
                    if left <= pause:
                        self._wake.wait(max(0.0, left))
                        break
                    if self._wake.wait(pause):
                        break
                    continue
                try:
                    self._ensure_groups(streams)
                    self._autoclaim(streams, max_count - len(buffer), buffer)
                    for name in streams:
                        if len(buffer) >= max_count:
                            break
                        self._read({name: ">"}, max_count - len(buffer), None, buffer)
                    if streams:
                        self._reconnect.succeeded()  # Redis answered
                    if buffer:
                        break
                    left = deadline - time.monotonic()
                    if left <= 0 or self._wake.is_set():
                        break
                    block = max(1, int(min(SLICE, left) * 1000))
                    self._read(dict.fromkeys(streams, ">"), max_count, block, buffer)
                    buffer.sort(key=lambda d: -_priority_of(d))
                except RedisError as exc:
                    if "NOGROUP" in str(exc):
                        self._forget_groups()  # Redis lost its data (a restart)
                        self._reconnect.succeeded()  # and answered
                        left = deadline - time.monotonic()
                        if left <= 0 or self._wake.wait(min(SLICE, left)):
                            break
                        continue
                    self._reconnect.failed(first_line(exc))
                    if deadline <= time.monotonic() or self._wake.is_set():
                        break
            taken = buffer[:max_count]
            del buffer[:max_count]
            return taken
        finally:
            self._wake.clear()

    def _buffer(self) -> list[Delivery]:
        buffer: list[Delivery] | None = getattr(self._local, "buffer", None)
        if buffer is None:
            buffer = self._local.buffer = []
        return buffer

    def _read(
        self, streams: dict[Any, Any], count: int, block: int | None, into: list[Delivery]
    ) -> None:
        reply: Any = self.client.xreadgroup(
            self.group, self.consumer, streams, count=count, block=block
        )
        for name, entries in reply or []:
            for entry_id, fields in entries:
                into.append(self._delivery(_text(name), entry_id, fields))

    def _autoclaim(self, streams: Sequence[str], count: int, into: list[Delivery]) -> None:
        now = time.monotonic()
        if now - getattr(self._local, "autoclaimed", 0.0) < min(AUTOCLAIM_EVERY, self.claim_idle):
            return
        self._local.autoclaimed = now
        idle_ms = int(self.claim_idle * 1000)
        for name in streams:
            if count <= 0:
                return
            reply: Any = self.client.xautoclaim(
                name, self.group, self.consumer, idle_ms, start_id="0-0", count=count
            )
            for entry_id, fields in reply[1]:
                if fields:  # entries deleted meanwhile come back empty
                    into.append(self._delivery(name, entry_id, fields))
                    count -= 1

    def _delivery(self, stream: str, entry_id: Any, fields: Any) -> Delivery:
        run_id = int(fields.get(b"run_id") or fields.get("run_id"))
        task_type = stream[len(self.namespace) + len(":runs:") :].rsplit(":", 1)[0]
        trace = fields.get(b"traceparent") or fields.get("traceparent")
        return Delivery(
            run_id, task_type, (stream, _text(entry_id)), _text(trace) if trace else None
        )

    def ack(self, delivery: Delivery) -> None:
        stream, entry_id = delivery.receipt
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.xack(stream, self.group, entry_id)
            pipe.xdel(stream, entry_id)
            pipe.execute()
        except RedisError as exc:
            log.warning(
                "run %d: cannot ack (another worker will take it over and find it claimed): %s",
                delivery.run_id,
                first_line(exc),
            )

    def reject(self, delivery: Delivery, *, requeue: bool = True) -> None:
        stream, entry_id = delivery.receipt
        try:
            pipe = self.client.pipeline(transaction=False)
            if requeue:
                pipe.xadd(
                    stream,
                    _fields(delivery.run_id, delivery.traceparent),
                    maxlen=self.maxlen,
                    approximate=True,
                )
            pipe.xack(stream, self.group, entry_id)
            pipe.xdel(stream, entry_id)
            pipe.execute()
        except RedisError as exc:
            log.warning(
                "run %d: cannot hand the delivery back (it will be auto-claimed): %s",
                delivery.run_id,
                first_line(exc),
            )

    def backlog(self, task_types: Sequence[str]) -> int | None:
        """Entries in these task types' streams: acked entries are deleted, so this
        counts queued and delivered-but-unacked ones."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for stream in self._streams(task_types):
                pipe.xlen(stream)
            return sum(int(n) for n in pipe.execute())
        except RedisError as exc:
            raise Unavailable(f"Redis: cannot count entries: {first_line(exc)}") from exc

    def wake(self) -> None:
        self._wake.set()

    def health(self) -> None:
        """One PING on a probe connection; during an outage, none before the backoff
        allows."""
        pause = self._reconnect.wait_time()
        if pause > 0:
            raise Unavailable(
                f"Redis unreachable ({self._reconnect.failures} failed attempt(s), "
                f"next in {pause:.1f} s): {self._reconnect.reason}"
            )
        probe = redis.Redis.from_url(
            self.url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), retries=0),
        )
        try:
            probe.ping()
        except RedisError as exc:
            self._reconnect.failed(first_line(exc))
            raise Unavailable(f"Redis unreachable: {first_line(exc)}") from exc
        finally:
            probe.close()
        self._reconnect.succeeded()

    def close(self) -> None:
        """Drop the connections; unacked deliveries are auto-claimed after ``claim_idle``."""
        self._wake.set()
        self._local.buffer = []
        self.client.close()

    def purge(self, task_types: Sequence[str]) -> None:
        """Delete these task types' streams (tests and benchmarks clean up with it)."""
        self.client.delete(*self._streams(task_types))
        self._forget_groups()


def _rank(priority: int) -> int:
    return max(min(PRIORITIES), min(max(PRIORITIES), priority))


def _priority_of(delivery: Delivery) -> int:
    stream, _ = delivery.receipt
    return int(stream.rsplit(":", 1)[1])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(run_id: int, traceparent: str | None) -> dict[Any, Any]:
    """A stream entry: the run id, and its W3C trace context when it has one."""
    fields: dict[Any, Any] = {"run_id": str(run_id)}
    if traceparent:
        fields["traceparent"] = traceparent
    return fields
