"""The process guard: kills a worker's process groups when the worker dies.

PR_SET_PDEATHSIG only reaches a worker's direct children; the processes those start
(``sleep 300 &`` in a shell task) would outlive a worker killed with SIGKILL. So each
worker starts one small guard process (``python -m schedd.executors.guard``) and tells
it, over a pipe, which process groups it runs (``+PGID`` / ``-PGID`` lines). When the
worker dies, however it dies, the kernel closes the pipe; the guard reads end-of-file,
sends SIGKILL to every group still registered and exits.

The guard lives in its own session, so a terminal's Ctrl-C or a signal to the worker's
process group does not end it before the worker has decided what to do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import IO

log = logging.getLogger("schedd.executors.guard")


class Guard:
    """The worker's side of the guard: start it, register and unregister groups."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "schedd.executors.guard"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def add(self, pgid: int) -> None:
        self._send(f"+{pgid}\n")

    def remove(self, pgid: int) -> None:
        self._send(f"-{pgid}\n")

    def _send(self, line: str) -> None:
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None:
                return
            try:
                proc.stdin.write(line.encode())
                proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                # The guard is gone (killed by hand?): direct children still die with the
                # worker through PR_SET_PDEATHSIG; say so once and stop writing.
                log.warning(
                    "the process guard (pid %s) has exited; grandchildren of "
                    "runs may outlive this worker",
                    proc.pid,
                )
                self._proc = None

    def close(self) -> None:
        """End the guard: it kills what is still registered (normally nothing)."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve(stream: IO[bytes]) -> set[int]:
    """Read registrations until end-of-file; return the groups still registered."""
    groups: set[int] = set()
    for raw in stream:
        line = raw.strip()
        if len(line) < 2 or line[:1] not in (b"+", b"-") or not line[1:].isdigit():
            continue
        pgid = int(line[1:])
        if line[:1] == b"+":
            groups.add(pgid)
        else:
            groups.discard(pgid)
    return groups


def kill_groups(groups: set[int]) -> None:
    for pgid in groups:
        # Gone already, or (PermissionError) reused by another user's process.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    kill_groups(serve(sys.stdin.buffer))


if __name__ == "__main__":
    main()
