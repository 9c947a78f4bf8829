"""Reconnection backoff for a message broker, shared by the threads of one instance.

An outage begins with the first failed attempt to reach the broker and ends with the
next success. Meanwhile every path that would open a connection (consume, publish,
health) first asks :meth:`Reconnect.wait_time`: the pause after the n-th failure of
the outage is ``FIRST * 2**(n-1)``, capped at ``LONGEST``, with "equal jitter" (a
uniform draw between half of it and all of it), so the workers of a fleet do not all
knock at the same instant when the broker comes back.

``FIRST`` = 0.2 s absorbs a blip (a dropped connection, a broker restarting in a
second) at almost no cost; ``LONGEST`` = 5 s bounds how long a worker stays idle after
the broker is back (at most 5 s plus one consume timeout) while a long outage costs
each process about one connection attempt every 4 s (instead of several a second).
Callers never sleep past their own timeouts: ``consume`` waits at most what is left of
its ``timeout`` and returns ``[]``, ``publish`` raises ``Unavailable`` as soon as the
next attempt would fall after its deadline.

Log discipline, so a long outage does not flood the process log (and the system events
stored from it): the first failure of an outage at WARNING, the further ones at DEBUG,
one INFO line when the broker answers again. An established connection that breaks is
not a failure by itself (the caller reopens it at once): if reopening fails, that is the
outage's warning; if it works, one INFO line says the connection was lost and reopened.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

FIRST = 0.2  # seconds: pause after the first failure of an outage
LONGEST = 5.0  # seconds: the pause stops doubling here


class Reconnect:
    """One broker instance's outage state: failures, the next allowed attempt, logging."""

    def __init__(
        self,
        broker: str,
        logger: logging.Logger,
        *,
        first: float = FIRST,
        longest: float = LONGEST,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.broker = broker  # as operators read it: "RabbitMQ", "Redis"
        self.log = logger
        self.first = first
        self.longest = longest
        self._clock = clock
        self._jitter = jitter  # a draw in [0, 1)
        self._lock = threading.Lock()
        self.failures = 0  # failed attempts in the current outage (0: none)
        self.reason = ""  # the last failure's, for Unavailable messages
        self._since = 0.0  # when the current outage's first failure happened
        self._next = 0.0  # no attempt before this (clock time)
        self._local = threading.local()  # .lost: why this thread's connection broke

    @property
    def down(self) -> bool:
        return self.failures > 0

    def wait_time(self) -> float:
        """Seconds before the next attempt is due (0.0: try now)."""
        with self._lock:
            return max(0.0, self._next - self._clock()) if self.failures else 0.0

    def failed(self, reason: str) -> float:
        """Count a failed attempt; the pause before the next one."""
        with self._lock:
            now = self._clock()
            self.failures += 1
            failures = self.failures
            if failures == 1:
                self._since = now
            nominal = min(self.longest, self.first * 2 ** min(failures - 1, 30))
            pause = nominal * (0.5 + 0.5 * self._jitter())
            self._next = now + pause
            self.reason = reason
        self._local.lost = None  # the outage's lines tell the rest
        if failures == 1:
            self.log.warning("%s unreachable, retrying with backoff: %s", self.broker, reason)
        else:
            self.log.debug(
                "%s still unreachable (%d failed attempts, next in %.1f s): %s",
                self.broker,
                failures,
                pause,
                reason,
            )
        return pause

    def succeeded(self) -> None:
        """The broker answered: end the outage (one INFO line if there was one)."""
        lost: str | None = getattr(self._local, "lost", None)
        self._local.lost = None
        if not self.failures:  # the common case, without the lock
            if lost is not None:
                self.log.info("%s connection lost and reopened: %s", self.broker, lost)
            return
        with self._lock:
            failures, self.failures = self.failures, 0
            elapsed = self._clock() - self._since
            self._next = 0.0
        if failures:
            self.log.info(
                "%s reachable again after %d failed attempt%s over %.1f s",
                self.broker,
                failures,
                "" if failures == 1 else "s",
                elapsed,
            )

    def lost(self, reason: str) -> None:
        """This thread's established connection broke (not an attempt): the caller
        reopens it at once, and that attempt's outcome is what gets logged."""
        self._local.lost = reason
        self.log.debug("%s connection lost, reconnecting: %s", self.broker, reason)
