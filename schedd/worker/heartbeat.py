"""Heartbeats and the fence.

Every ``heartbeat_interval`` the worker records that it is alive, with its load, and
renews ``heartbeat_at`` of the runs it holds. The reaper declares a worker dead after
``heartbeat_timeout`` without one and gives its runs to others; so a worker that has
gone ``fence_seconds`` (shorter than the timeout) without a successful heartbeat must
assume it is about to be declared dead: it kills its runs and stops claiming until a
heartbeat gets through again. The fence is judged from when the last good heartbeat
was *sent*, on the monotonic clock, by a watchdog thread that needs no database (the
heartbeat itself may hang for as long as the database connect timeout).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import psutil
from sqlalchemy.exc import SQLAlchemyError

from schedd.db import Database
from schedd.errors import NotFound, SchedError, first_line
from schedd.metrics import HEARTBEATS
from schedd.models import WorkerStatus
from schedd.schemas import HeartbeatIn
from schedd.services import workers

log = logging.getLogger("schedd.worker")

MB = 1024 * 1024
WATCHDOG_INTERVAL = 0.1


def machine_load(current_task_count: int) -> HeartbeatIn:
    """This host's load: 1-minute load average, memory in use (MB), CPU use (%)."""
    return HeartbeatIn(
        current_task_count=current_task_count,
        load_average=os.getloadavg()[0],
        memory_usage=round(psutil.virtual_memory().used / MB, 1),
        cpu_usage=psutil.cpu_percent(interval=None),  # since the previous heartbeat
    )


class Heartbeat:
    """The heartbeat thread and the fence watchdog thread of one worker."""

    def __init__(
        self,
        db: Database,
        worker_id: str,
        *,
        interval: float,
        fence_seconds: float,
        held: Callable[[], list[int]],
        executing: Callable[[], int],
        on_fence: Callable[[], None],
        on_draining: Callable[[], None],
        register: Callable[[], None],
        on_ok: Callable[[float], None] | None = None,
    ) -> None:
        self.db = db
        self.worker_id = worker_id
        self.interval = interval
        self.fence_seconds = fence_seconds
        self._held = held
        self._executing = executing
        self._on_fence = on_fence
        self._on_draining = on_draining
        self._register = register
        self._on_ok = on_ok
        self._lock = threading.Lock()
        self._ok_at = time.monotonic()
        self._fenced = False
        self._draining = False
        self._failing = False
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._beat_loop, name="worker-heartbeat", daemon=True),
            threading.Thread(target=self._watch_loop, name="worker-fence", daemon=True),
        ]

    @property
    def fenced(self) -> bool:
        return self._fenced

    @property
    def ok_at(self) -> float:
        """When (time.monotonic()) the last heartbeat that got through was sent."""
        return self._ok_at

    def succeeded(self, sent_at: float) -> None:
        """A heartbeat (or the registration) sent at ``sent_at`` got through."""
        with self._lock:
            self._ok_at = max(self._ok_at, sent_at)
            ok_at = self._ok_at
            was_fenced, self._fenced = self._fenced, False
        if self._on_ok is not None:
            self._on_ok(ok_at)
        if was_fenced:
            log.warning("heartbeat got through again; claiming runs again")

    def start(self) -> None:
        psutil.cpu_percent(interval=None)  # the first reading only starts the measurement
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        """One heartbeat; errors are logged (once per outage), never raised."""
        self._check_fence()
        sent_at = time.monotonic()
        try:
            with self.db.session() as session:
                worker = workers.heartbeat(
                    session,
                    self.worker_id,
                    machine_load(self._executing()),
                    run_ids=self._held(),
                )
        except NotFound:
            log.warning(
                "worker %s was removed from the database; registering again", self.worker_id
            )
            try:
                self._register()
            except (SchedError, SQLAlchemyError) as exc:
                log.error("cannot register worker %s again: %s", self.worker_id, exc)
                return
            self.succeeded(sent_at)
            return
        except SQLAlchemyError as exc:
            if not self._failing:
                log.warning(
                    "heartbeat failed (fence in %.1f s): %s",
                    max(0.0, self.fence_seconds - (time.monotonic() - self._ok_at)),
                    first_line(exc),
                )
            self._failing = True
            return
        self._failing = False
        self.succeeded(sent_at)
        HEARTBEATS.labels("worker").inc()
        if worker.status == WorkerStatus.draining and not self._draining:
            self._draining = True
            self._on_draining()

    def _watch_loop(self) -> None:
        while not self._stop.wait(WATCHDOG_INTERVAL):
            self._check_fence()

    def _check_fence(self) -> None:
        with self._lock:
            silent = time.monotonic() - self._ok_at
            trip = not self._fenced and silent > self.fence_seconds
            if trip:
                self._fenced = True
        if trip:
            log.error(
                "no heartbeat got through for %.1f s (fence %.1f s): stopping all runs and "
                "claiming until the database answers again",
                silent,
                self.fence_seconds,
            )
            self._on_fence()
