"""The worker's side of its process guard (:mod:`schedd.executors.guardproc`): start
it, register run groups, pass heartbeats and held outcomes, learn what it killed.

The protocol and why the guard exists are described in :mod:`schedd.executors.guardproc`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable

from schedd.executors.guardlines import DatabaseAccess, HeldOutcome, RunBinding

__all__ = ["DatabaseAccess", "Guard", "HeldOutcome", "RunBinding"]

log = logging.getLogger("schedd.executors.guard")


class Guard:
    """The worker's side of the guard: start it, register groups, report heartbeats."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._killed: set[int] = set()
        self._partial = b""
        self._holding: set[int] = set()  # runs whose outcome the guard holds
        self._fence: float | None = None  # what the guard process was told
        self._ok_at: float | None = None

    def start(
        self,
        fence_seconds: float | None = None,
        ok_at: float | None = None,
        database: DatabaseAccess | None = None,
    ) -> None:
        """Start the guard; with ``database`` it can write held outcomes itself."""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "schedd.executors.guardproc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        if database is not None:
            self._send(database.line())
        if fence_seconds is not None:
            self._fence = fence_seconds
            self._send(f"f{fence_seconds!r}\n")
        if ok_at is not None:
            self.heartbeat(ok_at)

    def fenced(self) -> bool:
        """Whether the fence holds now, judged as the guard process judges it: the last
        heartbeat that got through is older than the fence time. A run registered then
        is killed at once, so its command must not be let start (see launch.GATE)."""
        with self._lock:
            fence, ok_at = self._fence, self._ok_at
        return fence is not None and ok_at is not None and time.monotonic() - ok_at > fence

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def add(self, pgid: int, cgroup: str | None = None, run: RunBinding | None = None) -> None:
        self.forget(pgid)  # a reused group id starts clean
        if run is not None:
            self._send(f"r{pgid} {run.run_id} {run.claim} {run.worker_id}\n")
        if cgroup is not None:  # before the group: a fenced guard kills at "+" at once
            self._send(f"c{pgid} {cgroup}\n")
        self._send(f"+{pgid}\n")

    def remove(self, pgid: int) -> None:
        self._send(f"-{pgid}\n")

    def heartbeat(self, sent_at: float) -> None:
        """A heartbeat sent at ``sent_at`` (time.monotonic()) got through."""
        with self._lock:
            self._ok_at = sent_at if self._ok_at is None else max(self._ok_at, sent_at)
        self._send(f"h{sent_at!r}\n")

    def hold(self, outcome: HeldOutcome) -> None:
        """A run's process has ended with ``outcome``: the guard keeps it until
        :meth:`release`, and writes it itself if the worker dies or is fenced first."""
        with self._lock:
            self._holding.add(outcome.run_id)
        self._send(outcome.line())

    def release(self, run_ids: Iterable[int]) -> None:
        """The reports of ``run_ids`` are committed (or were not ours): drop them."""
        with self._lock:
            released = [run_id for run_id in run_ids if run_id in self._holding]
            self._holding.difference_update(released)
        if released:
            self._send("".join(f"a{run_id}\n" for run_id in released))

    def killed(self, pgid: int) -> bool:
        """True if the guard killed ``pgid`` because the worker was fenced.

        The guard writes its ``k`` line before it kills, so once a run's process is
        seen dead the line is already in the pipe.
        """
        with self._lock:
            self._drain()
            return pgid in self._killed

    def forget(self, pgid: int) -> None:
        with self._lock:
            self._killed.discard(pgid)

    def _drain(self) -> None:
        """Read the guard's ``k`` lines without blocking (caller holds the lock)."""
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        while True:
            try:
                data = os.read(proc.stdout.fileno(), 65_536)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            lines = (self._partial + data).split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                if line[:1] == b"k" and line[1:].isdigit():
                    self._killed.add(int(line[1:]))

    def _send(self, line: str) -> None:
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None:
                return
            self._drain()  # keep the guard's stdout from filling up
            try:
                proc.stdin.write(line.encode())
                proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                # The guard is gone (killed by hand?): direct children still die with the
                # worker through PR_SET_PDEATHSIG; say so once and stop writing.
                log.warning(
                    "the process guard (pid %s) has exited; grandchildren of "
                    "runs may outlive this worker, and a frozen worker's runs are "
                    "no longer stopped at the fence time",
                    proc.pid,
                )
                self._proc = None

    def close(self) -> None:
        """End the guard: it kills what is still registered (normally nothing).

        Outcomes it still holds (reports the worker could not write: the database is
        down) are written by the guard once the database answers; it is left to do
        that on its own rather than killed."""
        with self._lock:
            proc, self._proc = self._proc, None
            holding = len(self._holding)
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            if holding:
                log.warning(
                    "the process guard (pid %s) holds %d run outcome(s) this worker could "
                    "not write; it writes them when the database answers",
                    proc.pid,
                    holding,
                )
                return
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
