"""Several API processes on one port (``api.processes``, PostgreSQL only).

The api role's own process binds the port, makes the first-start files (never needed
here: those belong to the embedded SQLite default, which serves from one process),
serves as before, and starts ``api.processes - 1`` helpers (``python -m
schedd.api.helper``). Each inherits the listening socket and serves the same API; the
kernel gives each new connection to one of the processes waiting in ``accept``. A
helper that exits is started again after a pause (doubling up to 30 s); helpers die
with their parent (PR_SET_PDEATHSIG) and are stopped with the role.

Event metrics (request durations, authentication failures, heartbeats) are counted by
the process that served the request, and ``/metrics`` may be answered by any of them,
so the set shares them: :func:`share_metrics` puts prometheus_client in multiprocess
mode (each process writes its samples to files in one private directory that
``/metrics`` sums). `schedd run` calls it before prometheus_client is imported.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Collection

from schedd.config import Settings

log = logging.getLogger("schedd.api")

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable
RESTART_PAUSE = (1.0, 30.0)  # first and longest pause before a helper is started again


def share_metrics(settings: Settings, roles: Collection[str]) -> str | None:
    """With several API processes, make this process (and the helpers it starts, which
    inherit the environment) count event metrics in a shared directory; its path, or
    None when one process serves. Must run before prometheus_client is imported."""
    if "api" not in roles or settings.api.processes < 2:
        return None
    directory = os.environ.get(METRICS_DIR_ENV)
    if directory:  # the operator's own (it must be emptied between starts)
        return directory
    if "prometheus_client" in sys.modules:
        raise RuntimeError("share_metrics() must run before prometheus_client is imported")
    directory = tempfile.mkdtemp(prefix="schedd-metrics-")
    os.environ[METRICS_DIR_ENV] = directory
    atexit.register(shutil.rmtree, directory, True)
    return directory


def metrics_directory() -> str | None:
    """The shared metrics directory of this process's set, if it has one."""
    return os.environ.get(METRICS_DIR_ENV) or None


class Helpers:
    """The API's helper processes: started, restarted when one exits, stopped."""

    def __init__(self, count: int, sock: socket.socket, config: str | None) -> None:
        self.count = count
        self.sock = sock
        self.config = config
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="api-helpers", daemon=True)

    def start(self) -> None:
        for index in range(self.count):
            self._procs[index] = self._spawn()
        self._thread.start()
        log.info("API served by %d processes (pids %s)", self.count + 1, self.pids_text())

    def pids_text(self) -> str:
        with self._lock:
            pids = [str(os.getpid())] + [str(p.pid) for p in self._procs if p is not None]
        return ", ".join(pids)

    def _spawn(self) -> subprocess.Popen[bytes]:
        fd = self.sock.fileno()
        argv = [sys.executable, "-m", "schedd.api.helper", "--fd", str(fd)]
        argv += ["--parent", str(os.getpid())]
        if self.config:
            argv += ["--config", self.config]
        return subprocess.Popen(argv, pass_fds=(fd,), stdin=subprocess.DEVNULL)

    def _watch(self) -> None:
        pauses = [RESTART_PAUSE[0]] * self.count
        while not self._stopping.wait(0.5):
            for index, proc in enumerate(list(self._procs)):
                if proc is None or proc.poll() is None:
                    continue
                log.warning(
                    "API process %d exited with %s; starting another in %g s",
                    proc.pid,
                    proc.returncode,
                    pauses[index],
                )
                if self._stopping.wait(pauses[index]):
                    return
                pauses[index] = min(RESTART_PAUSE[1], pauses[index] * 2)
                with self._lock:
                    self._procs[index] = self._spawn()

    def stop(self, *, graceful: bool) -> None:
        self._stopping.set()
        with self._lock:
            procs = [p for p in self._procs if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)

    def join(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        self._thread.join(timeout)
        with self._lock:
            procs = [p for p in self._procs if p is not None]
        for proc in procs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                proc.wait(left)
            except subprocess.TimeoutExpired:
                return False
        return True
