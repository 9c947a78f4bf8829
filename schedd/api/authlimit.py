"""Limits on failed authentication: a token bucket per client address and one per key
prefix (``api.auth_failures_per_minute``). Only failures take tokens; once either
bucket of a request is empty the API answers 429 with ``Retry-After`` before looking
at the credential, so guessing keys costs the guesser time and the database nothing.

Each failure is logged, counted (``scheduler_api_auth_failures_total``) and audited
as ``denied`` with the key's shown prefix, never the key. A 429 is counted and logged
but not audited: an address past its limit would otherwise write a row per request.
The buckets live in the API process (several API hosts each count their own).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import sqlalchemy as sa

from schedd.db import Database
from schedd.errors import SchedError
from schedd.metrics import AUTH_FAILURES
from schedd.services import audit
from schedd.services.auth import SHOWN_PREFIX, looks_like_key

log = logging.getLogger("schedd.api")
MAX_BUCKETS = 10_000  # the oldest are forgotten beyond this (a full bucket is a new one)


class TooManyFailures(SchedError):
    """Too many failed authentications from this address or for this key prefix."""

    code = "too_many_requests"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def key_prefix(credential: str) -> str:
    """What may be shown of a credential: an API key's list prefix, else ``token``."""
    return credential[:SHOWN_PREFIX] if looks_like_key(credential) else "token"


class FailureLimiter:
    """Token buckets of ``per_minute`` failures, refilled continuously."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.lock = threading.Lock()
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, name: str, now: float) -> float:
        tokens, at = self.buckets.get(name, (self.capacity, now))
        return min(self.capacity, tokens + (now - at) * self.rate)

    def wait_seconds(self, names: list[str]) -> float:
        """0 when every bucket has a token left, else how long until they all do."""
        now = self.clock()
        with self.lock:
            missing = max((1.0 - self._level(name, now) for name in names), default=0.0)
        return 0.0 if missing <= 0 else missing / self.rate

    def fail(self, names: list[str]) -> None:
        """Take a token from each bucket (a failure happened)."""
        now = self.clock()
        with self.lock:
            for name in names:
                self.buckets[name] = (max(0.0, self._level(name, now) - 1.0), now)
                self.buckets.move_to_end(name)
            while len(self.buckets) > MAX_BUCKETS:
                self.buckets.popitem(last=False)


def buckets_of(address: str, credential: str) -> list[str]:
    return [f"address:{address}", f"prefix:{key_prefix(credential)}"]


def check(limiter: FailureLimiter, address: str, credential: str) -> None:
    """TooManyFailures when this address or key prefix is out of attempts."""
    wait = limiter.wait_seconds(buckets_of(address, credential))
    if wait > 0:
        AUTH_FAILURES.labels("limited").inc()
        log.warning(
            "authentication refused (429): too many failures from %s or for key prefix %s",
            address,
            key_prefix(credential),
        )
        raise TooManyFailures(
            "too many failed authentications from this address or for this key; "
            f"retry in {math.ceil(wait)} s",
            retry_after=math.ceil(wait),
        )


def failed(limiter: FailureLimiter, address: str, credential: str, error: SchedError) -> None:
    """Note a failed authentication: bucket, metric and log line; the audit entry is
    written by the error handler (:func:`audit_denied`), after the request's own
    transaction has ended (SQLite has one writer)."""
    limiter.fail(buckets_of(address, credential))
    prefix = key_prefix(credential)
    AUTH_FAILURES.labels("unauthorized").inc()
    log.warning("authentication failed from %s (key prefix %s): %s", address, prefix, error.message)
    error.denied = {"prefix": prefix, "address": address, "reason": error.message}  # type: ignore[attr-defined]


def audit_denied(db: Database, denied: dict[str, str]) -> None:
    """The audit entry of a failed authentication: the key's prefix, never the key."""
    try:
        with db.session() as session:
            audit.record(
                session,
                None,
                "auth",
                f"key:{denied['prefix']}"[:200],
                outcome="denied",
                detail={"address": denied["address"][:100], "reason": denied["reason"][:200]},
            )
    except sa.exc.SQLAlchemyError as exc:
        log.warning("could not write the audit entry of a failed authentication: %s", exc)
