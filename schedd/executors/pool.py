"""The worker's pool of function processes: start, hand out, recycle, replace, close.

The pool keeps ``size`` interpreter processes (:mod:`schedd.executors.funcpool`) alive
once the first function run asks for one. They are started by the pool's own thread,
never by a run's thread: PR_SET_PDEATHSIG fires when the *thread* that started a
process ends, and a run's thread ends with the run, while pool processes must live as
long as the worker (and die with it). Each process leads its own process group, which
the worker's guard knows, so nothing it starts outlives a SIGKILL of the worker.

A process is used by one run at a time and goes back to the pool after a clean call.
It is replaced after ``max_runs`` calls (asked to exit: end-of-file on its socket), and
at once, by SIGKILL to its group, after anything else: a timeout, a stop, a crash, or a
call that left threads, processes or an open output pipe behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from schedd.config import WorkerSettings
from schedd.executors.base import StopSignal
from schedd.executors.funcpool import FrameReader, send_frame
from schedd.executors.guard import Guard
from schedd.executors.launch import launch_command
from schedd.executors.members import LEADERS, RunMembers
from schedd.executors.process import become_subreaper, exit_outcome, inherited_environment
from schedd.executors.runas import RunUsers, working_directory

log = logging.getLogger("schedd.executors")

SCRIPT = Path(__file__).with_name("funcpool.py")
SLICE = 0.2  # longest wait between looks at the stop flag and the deadline
EXIT_WAIT = 5.0  # how long a recycled process may take to exit before it is killed
SPAWN_BACKOFF = (0.5, 10.0)  # pause after a process died before it was ready


class PoolError(Exception):
    """The pool cannot give a run a process (its processes die before they are ready)."""


class PoolProcess:
    """One interpreter of the pool, seen from the worker."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.proc = proc
        self.sock = sock
        self.pid = proc.pid  # leads its own process group: the pgid too
        self.reader = FrameReader()
        self.ready = False
        self.calls = 0
        self.retired_at: float | None = None

    def receive(self) -> dict[str, Any] | None:
        """Read what the socket has; the next frame if complete. EOFError: it is gone."""
        message = self.reader.next()
        if message is not None:
            return message
        try:
            data = self.sock.recv(65_536)
        except OSError as exc:
            raise EOFError(str(exc)) from exc
        if not data:
            raise EOFError("end of file")
        self.reader.feed(data)
        return self.reader.next()

    def send(self, message: dict[str, Any], fd: int) -> None:
        send_frame(self.sock, message, [fd])

    def exit_description(self) -> str:
        """How the process ended, once it has (it is reaped here)."""
        try:
            returncode = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "did not exit"
        outcome = exit_outcome(returncode, 0.0)
        return outcome.error or "exited with status 0"

    def kill(self) -> None:
        """SIGKILL to the whole group, then reap what the kill left."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        LEADERS.discard(self.pid)
        RunMembers(self.pid).kill_and_reap()
        self.sock.close()


class FunctionPool:
    """``size`` pool processes shared by a worker's run threads; thread-safe."""

    def __init__(self, settings: WorkerSettings, guard: Guard | None = None) -> None:
        self.size = settings.effective_function_pool_size
        self.max_runs = settings.max_runs_per_process
        self.interpreter = settings.python_interpreter
        self.users = RunUsers.from_settings(settings)
        self.user = self.users.pick(None)  # every process of the pool runs as this user
        self.cwd = working_directory(self.user, None, settings.working_directory)
        self.passthrough = list(settings.env_passthrough)
        self.guard = guard
        self._lock = threading.Lock()
        self._available = threading.Condition(self._lock)  # run threads wait here
        self._refill = threading.Condition(self._lock)  # the pool thread waits here
        self._idle: deque[PoolProcess] = deque()
        self._alive = 0  # processes started and not retired (idle, busy or starting)
        self._retiring: list[PoolProcess] = []
        self._started = False
        self._closed = False
        self._failures = 0
        self._last_failure = ""
        self._thread = threading.Thread(target=self._keep_full, name="function-pool", daemon=True)

    # --- for the run threads ----------------------------------------------------------

    def acquire(self, deadline: float, stop: StopSignal) -> PoolProcess | None:
        """A ready process for one call, or None if ``stop`` or ``deadline`` came first.

        PoolError when processes keep dying before they are ready (a bad interpreter)."""
        while True:
            process = self._take(deadline, stop)
            if process is None:
                return None
            ready = process.ready or self._wait_ready(process, deadline, stop)
            if ready:
                return process
            if ready is None:  # stop or deadline came first: the process stays
                with self._lock:
                    self._idle.appendleft(process)
                    self._available.notify()
                return None

    def release(self, process: PoolProcess, *, reuse: bool) -> None:
        """A call is over: back to the pool, or replaced (killed unless ``reuse``)."""
        if reuse:
            process.calls += 1
            if process.calls < self.max_runs:
                with self._lock:
                    if not self._closed:
                        self._idle.append(process)
                        self._available.notify()
                        return
        if not reuse:
            process.kill()
            self._forget(process)
        else:  # worn out: end-of-file asks it to exit; reaped by the pool thread
            process.sock.close()
            process.retired_at = time.monotonic()
        with self._lock:
            self._alive -= 1
            if reuse:
                self._retiring.append(process)
            self._refill.notify()

    def close(self, timeout: float = EXIT_WAIT) -> None:
        """Ask every idle process to exit, kill what does not; no run may be executing."""
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle), deque()
            self._alive -= len(idle)
            self._available.notify_all()
            self._refill.notify()
        for process in idle:
            process.sock.close()
        deadline = time.monotonic() + timeout
        for process in idle:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            process.kill()
            self._forget(process)
        if self._thread.ident is not None:
            self._thread.join(timeout)
        for process in self._take_retiring(everything=True):
            process.kill()
            self._forget(process)

    def pids(self) -> list[int]:
        """The pool's idle processes (for tests and logs)."""
        with self._lock:
            return [process.pid for process in self._idle]

    # --- internals --------------------------------------------------------------------

    def _take(self, deadline: float, stop: StopSignal) -> PoolProcess | None:
        with self._lock:
            if not self._started:
                self._started = True
                become_subreaper()
                self._thread.start()
            while not self._idle:
                if self._closed:
                    raise PoolError("the function pool is closed (the worker is stopping)")
                now = time.monotonic()
                if stop.is_set() or now >= deadline:
                    return None
                if self._failures >= 3:
                    raise PoolError(f"function pool processes {self._last_failure}")
                self._available.wait(min(SLICE, deadline - now))
            return self._idle.popleft()

    def _wait_ready(self, process: PoolProcess, deadline: float, stop: StopSignal) -> bool | None:
        """Wait for a new process's ``ready``: True when it came, False when the process
        died first (it is replaced), None when ``stop`` or ``deadline`` came first."""
        while not stop.is_set() and time.monotonic() < deadline:
            wait = min(SLICE, max(0.0, deadline - time.monotonic()))
            readable = _readable(process.sock, wait)
            if not readable:
                continue
            try:
                message = process.receive()
            except (EOFError, ValueError):
                self._died_before_ready(process)
                return False
            if message is not None:
                process.ready = "ready" in message
                if process.ready:
                    with self._lock:
                        self._failures = 0
                    return True
        return None

    def _died_before_ready(self, process: PoolProcess) -> None:
        # A fenced worker's guard kills new pool processes at once: that is the fence
        # (the pool fills again once heartbeats get through), not a broken interpreter.
        fenced = self.guard is not None and self.guard.killed(process.pid)
        reason = f"exited before they were ready ({process.exit_description()}; is " + (
            f"{self.interpreter!r} Python 3.11 or newer?)"
        )
        if fenced:
            log.info("a new function pool process was killed by the fence")
            time.sleep(SLICE)  # no busy refill while the fence holds
        else:
            log.warning("a function pool process %s", reason)
        process.kill()
        self._forget(process)
        with self._lock:
            if not fenced:
                self._failures += 1
                self._last_failure = reason
            self._alive -= 1
            self._available.notify_all()  # they see the failure
            self._refill.notify()

    def _keep_full(self) -> None:
        """The pool thread: start processes up to ``size``, reap retired ones."""
        while True:
            with self._lock:
                while (self._closed or self._alive >= self.size) and not self._retiring:
                    if self._closed:
                        return
                    self._refill.wait(1.0)
                missing = 0 if self._closed else self.size - self._alive
                self._alive += missing
                failures = self._failures
            for process in self._take_retiring(everything=False):
                self._forget(process)
            if failures:
                first, longest = SPAWN_BACKOFF
                time.sleep(min(longest, first * 2 ** (failures - 1)))
            for _ in range(missing):
                try:
                    process = self._spawn()
                except OSError as exc:
                    with self._lock:
                        self._alive -= 1
                        self._failures += 1
                        self._last_failure = f"cannot start: {exc.strerror or exc}"
                        self._available.notify_all()
                    continue
                with self._lock:
                    closed = self._closed
                    if not closed:
                        self._idle.append(process)
                        self._available.notify()
                if closed:
                    process.kill()
                    self._forget(process)
            if not missing:
                with self._lock:
                    if self._retiring and not self._closed:
                        self._refill.wait(0.2)

    def _take_retiring(self, *, everything: bool) -> list[PoolProcess]:
        """Retired processes that have exited (or all of them), SIGKILLed when late."""
        done: list[PoolProcess] = []
        now = time.monotonic()
        with self._lock:
            keep: list[PoolProcess] = []
            for process in self._retiring:
                late = now - (process.retired_at or now) > EXIT_WAIT
                if everything or late or process.proc.poll() is not None:
                    done.append(process)
                else:
                    keep.append(process)
            self._retiring = keep
        for process in done:
            process.kill()
        return done

    def _spawn(self) -> PoolProcess:
        """Start one pool process (only ever from the pool thread: see module doc)."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [self.interpreter, "-P", "-u", str(SCRIPT), str(child.fileno())]
        command, preexec = launch_command(argv, self.user)
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.cwd,
                env=inherited_environment(user=self.user, passthrough=self.passthrough),
                start_new_session=True,
                pass_fds=(child.fileno(),),
                preexec_fn=preexec,
            )
        except OSError:
            parent.close()
            raise
        finally:
            child.close()
        LEADERS.add(proc.pid)  # its status is collected here, never reaped by a run
        if self.guard is not None:
            self.guard.add(proc.pid)
        return PoolProcess(proc, parent)

    def _forget(self, process: PoolProcess) -> None:
        if self.guard is not None:
            self.guard.remove(process.pid)
            self.guard.forget(process.pid)


def _readable(sock: socket.socket, timeout: float) -> bool:
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(timeout * 1000))
