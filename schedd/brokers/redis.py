"""The Redis broker (redis-py): one stream per task type and priority, one consumer group.

Contract, beyond :mod:`schedd.brokers.base`:

- Stream ``<namespace>:runs:<task_type>:<priority>`` (priority 0..3) holds entries
  ``{run_id: <id>}``; the consumer group ``sched-workers`` is created idempotently
  (``MKSTREAM``), and again when a Redis restart without persistence lost it.
- ``publish`` XADDs in one pipeline with ``MAXLEN ~ maxlen`` trimming and returns once
  Redis answered; it raises ``Unavailable`` when Redis cannot be reached (redis-py
  retries with exponential backoff first). Trimming can drop entries never delivered
  when a stream outgrows ``maxlen``: the outbox sweeper republishes their runs.
- ``consume`` first takes over entries idle longer than ``claim_idle`` seconds in other
  consumers' pending lists (XAUTOCLAIM: a dead worker's deliveries), then reads new
  entries, higher priority streams first, then blocks in short slices (checking
  ``wake()``) until ``timeout``. It never raises for an outage: it waits and returns
  ``[]``. Entries read beyond ``max_count`` (a blocking read over several streams) stay
  buffered for the same thread's next call.
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
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from schedd.brokers.base import Broker, Delivery, Message
from schedd.config import Settings
from schedd.db import Database
from schedd.errors import Unavailable, first_line

log = logging.getLogger("schedd.brokers.redis")

GROUP = "sched-workers"
PRIORITIES = (3, 2, 1, 0)  # read order: critical first
MAXLEN = 100_000  # approximate cap per stream
AUTOCLAIM_EVERY = 1.0  # seconds between XAUTOCLAIM sweeps of one thread
SLICE = 0.1  # blocking reads last this long, then the wake event is looked at
SOCKET_TIMEOUT = 5.0
BACKOFF = (0.1, 2.0)


class RedisBroker(Broker):
    name = "redis"
    claims_in_database = False

    def __init__(
        self,
        settings: Settings,
        db: Database | None = None,
        *,
        namespace: str = "sched",
        claim_idle: float | None = None,
        maxlen: int = MAXLEN,
    ) -> None:
        self.url = settings.message_queue.url
        self.namespace = namespace
        # Seconds a delivery may sit unacked before another consumer takes it.
        self.claim_idle = (
            settings.message_queue.claim_idle_seconds if claim_idle is None else claim_idle
        )
        self.maxlen = maxlen
        self.client = self._client(self.url)
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
            retry=Retry(ExponentialBackoff(cap=BACKOFF[1], base=BACKOFF[0]), retries=3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
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
                self.client.xgroup_create(name, GROUP, id="0", mkstream=True)
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
        try:
            self._ensure_groups(sorted(set(targets)))
            pipe = self.client.pipeline(transaction=False)
            for message, target in zip(messages, targets, strict=True):
                pipe.xadd(
                    target, {"run_id": str(message.run_id)}, maxlen=self.maxlen, approximate=True
                )
            pipe.execute()
        except RedisError as exc:
            self._forget_groups()
            raise Unavailable(f"Redis: cannot publish: {first_line(exc)}") from exc

    def consume(self, task_types: Sequence[str], max_count: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + max(0.0, timeout)
        max_count = max(1, max_count)
        buffer: list[Delivery] = self._buffer()
        streams = self._streams(task_types)
        try:
            while len(buffer) < max_count:
                try:
                    self._ensure_groups(streams)
                    self._autoclaim(streams, max_count - len(buffer), buffer)
                    for name in streams:
                        if len(buffer) >= max_count:
                            break
                        self._read({name: ">"}, max_count - len(buffer), None, buffer)
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
                    else:
                        log.warning("Redis consume failed, retrying: %s", first_line(exc))
                    left = deadline - time.monotonic()
                    if left <= 0 or self._wake.wait(min(BACKOFF[0], left)):
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
        reply: Any = self.client.xreadgroup(GROUP, self.consumer, streams, count=count, block=block)
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
                name, GROUP, self.consumer, idle_ms, start_id="0-0", count=count
            )
            for entry_id, fields in reply[1]:
                if fields:  # entries deleted meanwhile come back empty
                    into.append(self._delivery(name, entry_id, fields))
                    count -= 1

    def _delivery(self, stream: str, entry_id: Any, fields: Any) -> Delivery:
        run_id = int(fields.get(b"run_id") or fields.get("run_id"))
        task_type = stream[len(self.namespace) + len(":runs:") :].rsplit(":", 1)[0]
        return Delivery(run_id, task_type, (stream, _text(entry_id)))

    def ack(self, delivery: Delivery) -> None:
        stream, entry_id = delivery.receipt
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.xack(stream, GROUP, entry_id)
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
                    stream, {"run_id": str(delivery.run_id)}, maxlen=self.maxlen, approximate=True
                )
            pipe.xack(stream, GROUP, entry_id)
            pipe.xdel(stream, entry_id)
            pipe.execute()
        except RedisError as exc:
            log.warning(
                "run %d: cannot hand the delivery back (it will be auto-claimed): %s",
                delivery.run_id,
                first_line(exc),
            )

    def wake(self) -> None:
        self._wake.set()

    def health(self) -> None:
        probe = redis.Redis.from_url(
            self.url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT
        )
        try:
            probe.ping()
        except RedisError as exc:
            raise Unavailable(f"Redis unreachable: {first_line(exc)}") from exc
        finally:
            probe.close()

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
