"""The SQLite scheduler lease: one scheduler per SQLite database, refused clearly.

SQLite has no ``SKIP LOCKED`` and one writer at a time, so the embedded setup runs one
scheduler. A second scheduler on the same file must fail at start with a message
naming the first one, not quietly fight it for the write lock. The lease is a row in
``leases`` (name ``scheduler``) with an expiry the scheduler loop renews; a holder
that crashed is replaced once its lease expires, or at once when it was a process on
this host that no longer exists. (Correctness does not depend on the lease: the unique
fire key still makes a double fire impossible; the lease is about a clear refusal.)
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from schedd.db import Database
from schedd.errors import Conflict
from schedd.models import Lease
from schedd.types import utcnow

log = logging.getLogger("schedd.scheduler.lease")

LEASE_NAME = "scheduler"
leases = Lease.__table__  # type: ignore[attr-defined]


def _holder_parts(holder: str) -> tuple[str, int | None]:
    """(host, pid) of a holder string ``host:pid:token``."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    return host, int(pid_text) if pid_text.isdigit() else None


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, owned by another user
    return False


class SchedulerLease:
    """The lease of the one scheduler of a SQLite database."""

    def __init__(self, db: Database, ttl: float, name: str = LEASE_NAME) -> None:
        self.db = db
        self.ttl = ttl
        self.name = name
        self.host = socket.gethostname()
        self.holder = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.held = False
        self._renewed = float("-inf")

    def acquire(self, now: datetime | None = None) -> None:
        """Take the lease or raise Conflict naming the scheduler that holds it."""
        now = now or utcnow()
        if self._take(now):
            self.held = True
            self._renewed = time.monotonic()
            return
        current = self._current()
        if current is not None:
            holder, _ = current
            host, pid = _holder_parts(holder)
            # A holder on this host whose process is gone need not be waited for.
            gone = host == self.host and pid is not None and _process_gone(pid)
            if gone and self._take(now, replacing=holder):
                log.info("took over the scheduler lease of pid %s, which has exited", pid)
                self.held = True
                self._renewed = time.monotonic()
                return
        raise Conflict(self._refusal(current))

    def try_acquire(self, now: datetime | None = None) -> bool:
        """Take the lease if it is free (or ours, or expired); False when another holds it."""
        try:
            self.acquire(now)
        except Conflict:
            return False
        return True

    def renew(self, now: datetime | None = None) -> bool:
        """Extend the lease; False when it was lost (taken over after expiring).

        Without an explicit ``now``, a lease renewed less than a tenth of its ttl ago is
        not written again (the loop may run many passes a second).
        """
        if now is None:
            if self.held and time.monotonic() - self._renewed < self.ttl / 10:
                return True
            now = utcnow()
        with self.db.engine.begin() as conn:
            renewed = conn.execute(
                sa.update(leases)
                .where(leases.c.name == self.name, leases.c.holder == self.holder)
                .values(expires_at=now + timedelta(seconds=self.ttl))
            ).rowcount
        self.held = renewed == 1
        self._renewed = time.monotonic()
        return self.held

    def release(self) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(
                sa.delete(leases).where(leases.c.name == self.name, leases.c.holder == self.holder)
            )
        self.held = False

    def _take(self, now: datetime, replacing: str | None = None) -> bool:
        """Insert the lease, or take it over when expired, ours, or ``replacing``'s."""
        expires = now + timedelta(seconds=self.ttl)
        takeover = sa.or_(leases.c.expires_at < now, leases.c.holder == self.holder)
        if replacing is not None:
            takeover = sa.or_(takeover, leases.c.holder == replacing)
        dialect = postgresql if self.db.is_postgres else sqlite
        stmt = (
            dialect.insert(leases)
            .values(name=self.name, holder=self.holder, expires_at=expires)
            .on_conflict_do_update(
                index_elements=[leases.c.name],
                set_={"holder": self.holder, "expires_at": expires},
                where=takeover,
            )
            .returning(leases.c.holder)
        )
        with self.db.engine.begin() as conn:
            return conn.execute(stmt).first() is not None

    def _current(self) -> tuple[str, datetime] | None:
        with self.db.engine.connect() as conn:
            row = conn.execute(
                sa.select(leases.c.holder, leases.c.expires_at).where(leases.c.name == self.name)
            ).first()
        return (row[0], row[1]) if row is not None else None

    def _refusal(self, current: tuple[str, datetime] | None) -> str:
        who = "another process"
        if current is not None:
            host, pid = _holder_parts(current[0])
            who = f"pid {pid} on host {host}" if pid is not None else current[0]
        return (
            f"another scheduler is running on this SQLite database ({who}); SQLite allows "
            "one scheduler: stop it, run this daemon without the scheduler role, or use "
            "PostgreSQL to run several schedulers"
        )
