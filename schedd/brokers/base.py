"""The broker interface every dispatch backend implements.

Contract (the shared contract tests hold every implementation to it):

- ``publish(messages)`` returns only once the broker has accepted every message
  durably (publisher confirms, XADD acknowledged, a committed row). It raises
  ``Unavailable`` when it cannot; the caller leaves the runs pending and the outbox
  sweeper publishes them again later.
- ``consume(task_types, max_count, timeout)`` blocks at most ``timeout`` seconds and
  returns at most ``max_count`` deliveries for the given task types, higher priority
  first where the backend can order. Returns early when ``wake()`` is called.
- Every delivery is eventually ``ack``-ed (after the run was claimed in the database,
  or found already taken) or ``reject``-ed (requeue=True hands it to another worker).
  Deliveries neither acked nor rejected are redelivered after the consumer dies.
- A broker whose ``claims_in_database`` is True carries no messages: ``consume`` only
  waits for a hint that work may be there, and workers claim pending runs straight
  from the table in priority order (the embedded default).
- Implementations are safe to use from several threads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Message:
    """What the scheduler hands over: which run, how urgent, which worker pool."""

    run_id: int
    priority: int  # Priority.rank: 0 low .. 3 critical
    task_type: str
    traceparent: str | None = None  # W3C trace context (tracing on), carried as a header


@dataclass(frozen=True)
class Delivery:
    """A message as a consumer received it; ``receipt`` is the backend's ack handle."""

    run_id: int
    task_type: str
    receipt: Any = None
    traceparent: str | None = None  # the message's W3C trace context, when it had one


class Broker(ABC):
    """Carries run ids to workers. See the module docstring for the contract."""

    name: str = "broker"
    claims_in_database: bool = False

    @abstractmethod
    def publish(self, messages: Sequence[Message]) -> None: ...

    @abstractmethod
    def consume(
        self, task_types: Sequence[str], max_count: int, timeout: float
    ) -> list[Delivery]: ...

    @abstractmethod
    def ack(self, delivery: Delivery) -> None: ...

    @abstractmethod
    def reject(self, delivery: Delivery, *, requeue: bool = True) -> None: ...

    @abstractmethod
    def wake(self) -> None:
        """Make a blocked ``consume`` in this process return now."""

    @abstractmethod
    def health(self) -> None:
        """Return when the broker answers; raise ``Unavailable`` otherwise."""

    @abstractmethod
    def close(self) -> None: ...

    def backlog(self, task_types: Sequence[str]) -> int | None:
        """How many messages for these task types the broker holds that no consumer has
        acked (queued, or delivered and not yet acked where the backend cannot tell the
        two apart); None when the backend cannot say. The outbox sweeper compares it
        with the pending runs to republish only what the broker lost, never the whole
        backlog. Raises ``Unavailable`` when the broker does not answer. The default
        cannot say.
        """
        return None

    def keepalive(self) -> None:
        """Service this thread's connection while its consumer takes no deliveries.

        A worker whose slots are all busy calls it about once a second instead of
        ``consume``, so a connection whose protocol needs the consuming thread to answer
        (AMQP heartbeats, with pika) stays alive during long runs. Must not block for
        long. The default does nothing.
        """
        return None
