"""The database broker: the pending row is the message; the broker only wakes workers.

``claims_in_database`` is True: workers claim pending runs straight from the table
(:func:`schedd.services.claims.claim_next`), and :meth:`DatabaseBroker.consume` only
waits for a hint that there may be work, returning no deliveries.

Hints: on PostgreSQL ``publish`` sends ``NOTIFY sched_runs`` (payload: the task type)
and a consumer LISTENs on a dedicated connection; polling covers notifications lost
while that connection was down. On SQLite (and wherever the listener is down) consume
polls every ``POLL_INTERVAL``. Within one process, ``publish`` and ``wake`` also set an
in-process event, so when the API, scheduler and worker share a process a trigger
reaches the worker at once. Nothing here is durable: losing a hint delays a run by at
most one polling interval, and the outbox sweeper covers the rest.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from schedd.brokers.base import Broker, Delivery, Message
from schedd.config import Settings
from schedd.db import Database
from schedd.errors import Unavailable, first_line

log = logging.getLogger("schedd.brokers.database")

CHANNEL = "sched_runs"
POLL_INTERVAL = 0.25  # SQLite, or PostgreSQL without a working LISTEN connection
LISTEN_SLICE = 0.25  # how often the listener thread looks at the closed flag
RECONNECT_BACKOFF = (0.5, 10.0)


class DatabaseBroker(Broker):
    name = "database"
    claims_in_database = True

    def __init__(self, settings: Settings, db: Database) -> None:
        self.db = db
        self.connect_timeout = settings.database.connection_timeout
        self._hint = threading.Event()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._listener: threading.Thread | None = None
        self._listening = False
        self._wanted: frozenset[str] | None = None

    def publish(self, messages: Sequence[Message]) -> None:
        """Wake consumers of these runs' task types (NOTIFY on PostgreSQL)."""
        if not messages:
            return
        if self.db.is_postgres:
            try:
                with self.db.engine.begin() as conn:
                    for task_type in sorted({m.task_type for m in messages}):
                        conn.execute(
                            sa.text("SELECT pg_notify(:channel, :payload)"),
                            {"channel": CHANNEL, "payload": task_type},
                        )
            except SQLAlchemyError as exc:
                raise Unavailable(f"cannot notify workers: {first_line(exc)}") from exc
        self._hint.set()

    def consume(self, task_types: Sequence[str], max_count: int, timeout: float) -> list[Delivery]:
        """Wait up to ``timeout`` for a hint (or a poll interval); always returns []."""
        self._wanted = frozenset(task_types)
        if self.db.is_postgres:
            self._ensure_listener()
        wait = timeout if self._listening else min(timeout, POLL_INTERVAL)
        self._hint.wait(wait)
        self._hint.clear()
        return []

    def ack(self, delivery: Delivery) -> None:
        """Nothing to acknowledge: the claim in the database is the acknowledgement."""

    def reject(self, delivery: Delivery, *, requeue: bool = True) -> None:
        """Nothing to hand back: an unclaimed run simply stays pending."""

    def wake(self) -> None:
        self._hint.set()

    def health(self) -> None:
        try:
            with self.db.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise Unavailable(f"database unreachable: {first_line(exc)}") from exc

    def close(self) -> None:
        self._closed.set()
        self._hint.set()
        listener = self._listener
        if listener is not None:
            listener.join(LISTEN_SLICE + 1.0)

    # --- PostgreSQL LISTEN ----------------------------------------------------------

    def _ensure_listener(self) -> None:
        with self._lock:
            if self._listener is None and not self._closed.is_set():
                self._listener = threading.Thread(
                    target=self._listen, name="database-broker-listen", daemon=True
                )
                self._listener.start()

    def _conninfo(self) -> str:
        url = self.db.engine.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    def _listen(self) -> None:
        import psycopg  # only here: a SQLite-only process never loads it

        first, longest = RECONNECT_BACKOFF
        backoff = first
        while not self._closed.is_set():
            try:
                with psycopg.connect(
                    self._conninfo(),
                    autocommit=True,
                    connect_timeout=max(1, int(self.connect_timeout)),
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._listening = True
                    backoff = first
                    self._hint.set()  # notifications may have been missed while down
                    while not self._closed.is_set():
                        for notify in conn.notifies(timeout=LISTEN_SLICE):
                            wanted = self._wanted
                            if wanted is None or notify.payload in wanted:
                                self._hint.set()
            except psycopg.Error as exc:
                if self._listening:
                    log.warning("LISTEN connection lost, polling until it is back: %s", exc)
                self._listening = False
                self._closed.wait(backoff)
                backoff = min(longest, backoff * 2)
        self._listening = False
