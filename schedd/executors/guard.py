"""The process guard: kills a worker's run groups when the worker dies or is fenced.

PR_SET_PDEATHSIG only reaches a worker's direct children; the processes those start
(``sleep 300 &`` in a shell task) would outlive a worker killed with SIGKILL. And a
worker that is frozen (SIGSTOP, a stalled VM) cannot stop its own runs when the
database declares it dead. So each worker starts one small guard process
(``python -m schedd.executors.guard``) in its own session and tells it, over a pipe,
one line per message:

- ``+PGID`` / ``-PGID``: a run's process group started / is gone;
- ``cPGID DIR``: the run of group PGID also has the cgroup DIR, killed with it
  (``cgroup.kill``, or freeze and kill: :func:`~.cgroups.kill_directory`), so its
  ``setsid`` and double-forked processes die too; ``-PGID`` forgets it;
- ``fSECONDS``: the fence time;
- ``hT``: a heartbeat sent at ``T`` (CLOCK_MONOTONIC seconds, the same clock in every
  process of the host) got through.

The guard kills (SIGKILL) every registered group once the last good heartbeat is
older than the fence time, whether the worker is dead, frozen or cut off from the
database; while it stays fenced it kills each newly registered group at once. A later
heartbeat lifts the fence. Before each kill it writes ``kPGID`` back on its stdout, so
the worker can tell a run the guard ended from one that died of SIGKILL by itself
(:meth:`Guard.killed`). When the worker dies, however it dies, the kernel closes the
pipe; the guard reads end-of-file, kills every group still registered and exits.

Unknown lines are ignored, so the protocol can grow (isolation's cgroups) without
breaking an older guard.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from schedd.executors.cgroups import kill_directory

log = logging.getLogger("schedd.executors.guard")

TICK = 0.05  # how often the guard looks at the clock when nothing arrives


class Guard:
    """The worker's side of the guard: start it, register groups, report heartbeats."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._killed: set[int] = set()
        self._partial = b""

    def start(self, fence_seconds: float | None = None, ok_at: float | None = None) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "schedd.executors.guard"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        if fence_seconds is not None:
            self._send(f"f{fence_seconds!r}\n")
        if ok_at is not None:
            self.heartbeat(ok_at)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def add(self, pgid: int, cgroup: str | None = None) -> None:
        self.forget(pgid)  # a reused group id starts clean
        if cgroup is not None:  # before the group: a fenced guard kills at "+" at once
            self._send(f"c{pgid} {cgroup}\n")
        self._send(f"+{pgid}\n")

    def remove(self, pgid: int) -> None:
        self._send(f"-{pgid}\n")

    def heartbeat(self, sent_at: float) -> None:
        """A heartbeat sent at ``sent_at`` (time.monotonic()) got through."""
        self._send(f"h{sent_at!r}\n")

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
        if proc.stdout is not None:
            proc.stdout.close()


class Watch:
    """The guard's state: registered groups, the fence, and what it has killed."""

    def __init__(self, report: int | None = None) -> None:
        self.groups: set[int] = set()
        self.cgroups: dict[int, str] = {}
        self.fence: float | None = None
        self.ok_at: float | None = None
        self.fenced = False
        self._report = report

    def handle(self, line: bytes, now: float) -> None:
        kind, value = line[:1], line[1:]
        try:
            if kind == b"+" and value.isdigit():
                self.groups.add(int(value))
                if self.fenced:
                    self._kill({int(value)})
            elif kind == b"-" and value.isdigit():
                self.groups.discard(int(value))
                self.cgroups.pop(int(value), None)
            elif kind == b"c" and b" " in value:
                pgid, directory = value.split(b" ", 1)
                self.cgroups[int(pgid)] = directory.decode()
            elif kind == b"f":
                self.fence = float(value)
            elif kind == b"h":
                self.ok_at = max(self.ok_at or 0.0, float(value))
        except ValueError:
            return
        self.check(now)

    def check(self, now: float) -> None:
        """Trip the fence when the last good heartbeat is too old; lift it when fresh."""
        if self.fence is None or self.ok_at is None:
            return
        late = now - self.ok_at > self.fence
        if late and not self.fenced:
            self.fenced = True
            if self.groups:
                print(
                    f"schedd guard: no heartbeat for {now - self.ok_at:.1f} s (fence "
                    f"{self.fence:g} s): killing {len(self.groups)} run group(s)",
                    file=sys.stderr,
                    flush=True,
                )
            self._kill(self.groups)
        elif not late and self.fenced:
            self.fenced = False

    def deadline(self) -> float | None:
        if self.fence is None or self.ok_at is None or self.fenced:
            return None
        return self.ok_at + self.fence

    def _kill(self, groups: set[int]) -> None:
        for pgid in sorted(groups):
            if self._report is not None:
                with contextlib.suppress(OSError):
                    os.write(self._report, f"k{pgid}\n".encode())
            kill_group(pgid)
            if pgid in self.cgroups:
                kill_directory(Path(self.cgroups[pgid]))


def kill_group(pgid: int) -> None:
    # Gone already, or (PermissionError) reused by another user's process.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def serve(fd: int, watch: Watch) -> None:
    """Read messages from ``fd`` until end-of-file, acting on the fence in between."""
    partial = b""
    while True:
        now = time.monotonic()
        watch.check(now)
        deadline = watch.deadline()
        wait = TICK if deadline is None else min(max(0.0, deadline - now) + 0.001, 1.0)
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            continue
        data = os.read(fd, 65_536)
        if not data:
            return
        lines = (partial + data).split(b"\n")
        partial = lines.pop()
        now = time.monotonic()
        for line in lines:
            watch.handle(line.strip(), now)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker frozen with a full pipe must never block the guard: a lost ``k`` line
    # only makes the worker report that run as killed by SIGKILL.
    os.set_blocking(sys.stdout.fileno(), False)
    watch = Watch(report=sys.stdout.fileno())
    serve(sys.stdin.fileno(), watch)
    for pgid in watch.groups:
        kill_group(pgid)


if __name__ == "__main__":
    main()
