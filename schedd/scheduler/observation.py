"""How long this scheduler has been able to watch the database without a gap.

The reaper declares a worker dead when its last heartbeat is older than the heartbeat
timeout. That is only fair if the worker could have written one meanwhile: after a
database outage every worker's heartbeat is as old as the outage, and a reaper that
judged them the moment the database answered again would reap live workers (and
throw away the outcomes they were about to write). So the reaper only judges after
this scheduler has reached the database continuously for a full heartbeat timeout:

- a failed database step ends the observation; it starts again at the next success;
- so does a gap longer than ``max_gap`` seconds between two successes (this process
  was stopped, or its passes could not run): an outage may have hidden in it;
- a process that has just started has observed nothing yet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("schedd.scheduler.reaper")


class Observation:
    """Continuous reachability of the database, on the monotonic clock."""

    def __init__(self, max_gap: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_gap = max_gap
        self.clock = clock
        self._since: float | None = None  # start of the current unbroken observation
        self._last_ok: float | None = None
        self._waiting_logged = False

    def succeeded(self) -> None:
        """A database step just worked."""
        now = self.clock()
        if self._since is None or self._last_ok is None or now - self._last_ok > self.max_gap:
            self._since = now
        self._last_ok = now

    def failed(self) -> None:
        """A database step just failed: what happens now cannot be observed."""
        self._since = None
        self._last_ok = None

    def observed_for(self) -> float:
        """Seconds of unbroken reachability up to the last success (0 when broken)."""
        if self._since is None or self._last_ok is None:
            return 0.0
        if self.clock() - self._last_ok > self.max_gap:
            return 0.0
        return self._last_ok - self._since

    def may_judge(self, timeout: float) -> bool:
        """True once the database was reachable for ``timeout`` seconds without a gap."""
        observed = self.observed_for()
        if observed >= timeout:
            if self._waiting_logged:
                log.info("the database has been reachable for %gs: reaping again", timeout)
            self._waiting_logged = False
            return True
        if not self._waiting_logged:
            log.info(
                "not reaping until the database has been reachable for a heartbeat timeout "
                "(%gs): workers need that long to heartbeat after an outage",
                timeout,
            )
            self._waiting_logged = True
        return False
