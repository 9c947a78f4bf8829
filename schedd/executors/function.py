"""The function executor: calls ``package.module:function`` in a pool process.

The command names the function (:mod:`schedd.executors.target`), each argument is a
JSON document passed positionally. The call runs in one of the worker's pool
processes (:mod:`schedd.executors.pool`), never in the worker itself, with the same
semantics as the other executors:

- output: the process's fds 1 and 2 point at a pipe for the call, so prints, C-level
  writes and subprocesses all reach the same OutputSink (and cap) as a shell's output;
- a return completes the run with exit code 0 and the return value (JSON, else its
  repr) as the run's result; an exception fails it with exit code 1, ``Type: message``
  as the error and the traceback in the output; ``SystemExit(n)`` ends it with status
  ``n`` as a process would; a crash (``os._exit``, a signal) fails it with the status or
  the signal, and the process is replaced;
- timeout and stop end the call by ending its process: SIGTERM to its process group,
  SIGKILL after the grace (:func:`~schedd.executors.base.kill_grace`), and the pool
  starts another. What a call leaves running is killed with that group.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from dataclasses import replace
from typing import Any

from schedd.config import WorkerSettings
from schedd.executors.base import (
    Ending,
    Executor,
    Outcome,
    OutputSink,
    RunSpec,
    StopReason,
    StopSignal,
    describe_seconds,
    kill_grace,
)
from schedd.executors.cgroups import Cgroups
from schedd.executors.guard import Guard
from schedd.executors.members import GroupKiller, RunMembers
from schedd.executors.pool import FunctionPool, PoolError, PoolProcess
from schedd.executors.process import READ_SIZE, exit_outcome
from schedd.executors.runas import RunAsRefused, working_directory
from schedd.executors.target import arguments_problem, target_problem

SLICE = 0.2  # longest wait between looks at the stop flag and the deadline
# After the reply, how long the output pipe may stay open: a process the call started
# may hold it; after this the group is killed and the pool process replaced.
EOF_WAIT = 0.5
SEND_ATTEMPTS = 3  # an idle pool process may have died: try another one


class FunctionExecutor(Executor):
    name = "function"

    def __init__(
        self,
        settings: WorkerSettings,
        guard: Guard | None = None,
        cgroups: Cgroups | None = None,  # pool processes are shared: no per-run cgroup
    ) -> None:
        self.settings = settings
        self.guard = guard
        self.pool = FunctionPool(settings, guard)

    def close(self) -> None:
        self.pool.close()

    def execute(self, spec: RunSpec, output: OutputSink, stop: StopSignal) -> Outcome:
        started = time.monotonic()
        problem = target_problem(spec.command) or arguments_problem(spec.arguments)
        if problem is not None:
            return Outcome(Ending.failed, error=f"cannot call {spec.command!r}: {problem}")
        try:
            cwd = self._directory(spec)
        except RunAsRefused as exc:
            return Outcome(Ending.failed, error=str(exc))
        deadline = started + spec.timeout
        request = {
            "target": spec.command,
            "arguments": list(spec.arguments),
            "env": {**spec.task_environment, **spec.environment()},
            "cwd": cwd,
        }
        for _ in range(SEND_ATTEMPTS):
            try:
                process = self.pool.acquire(deadline, stop)
            except PoolError as exc:
                return Outcome(Ending.failed, error=str(exc), duration=_since(started))
            if process is None:
                return self._waited_out(spec, stop, started)
            call = _Call(process, output, stop, deadline, self.settings.kill_grace_seconds)
            if not call.send(request):
                # Asked before the release, which forgets what the guard killed.
                fenced = self._fenced(process)
                self.pool.release(process, reuse=False)
                if fenced:
                    # The guard killed the pool while the worker was fenced: the call
                    # never started, so the run is handed back, not failed.
                    stop.stop(StopReason.fenced, immediate=True)
                if stop.is_set():
                    return Outcome(Ending.stopped, duration=_since(started))
                continue
            ending, reply = call.supervise()
            fenced = reply is None and ending is None and self._fenced(process)
            self.pool.release(process, reuse=call.reusable)
            if fenced:
                stop.stop(StopReason.fenced, immediate=True)
                return Outcome(Ending.stopped, duration=_since(started))
            return _outcome(spec, ending, reply, process, _since(started))
        return Outcome(
            Ending.failed,
            error="function pool processes died before they could take the call",
            duration=_since(started),
        )

    def _directory(self, spec: RunSpec) -> str | None:
        """The call's working directory (None: the pool's); RunAsRefused says why not.

        Pool processes are shared by every function task, so they all run as the
        worker's run user in the worker's cgroup; a task asking for another user or for
        resource limits cannot be a function task (a limit not enforced fails the run,
        as on a worker without the controller)."""
        user = self.pool.users.pick(spec.run_as)
        if user != self.pool.user:
            raise RunAsRefused(
                f"run_as {spec.run_as!r}: function calls run as the worker's run user "
                f"{self.pool.user.name!r} (the pool is shared); use a shell or python task"
            )
        wanted = spec.limits.wanted()
        if wanted:
            fields = ", ".join(sorted(wanted.values()))
            raise RunAsRefused(
                f"function calls share the pool's processes, so a run cannot have its own "
                f"{fields}: the run is not started (use a shell or python task)"
            )
        if spec.working_dir is None:
            return None
        return working_directory(user, spec.working_dir, None)

    def _fenced(self, process: PoolProcess) -> bool:
        """True when the guard killed the process because the worker was fenced."""
        # The guard writes its kill line before it kills, so a process seen dead with
        # that line in the pipe died of the fence.
        return self.guard is not None and self.guard.killed(process.pid)

    def _waited_out(self, spec: RunSpec, stop: StopSignal, started: float) -> Outcome:
        if stop.is_set():
            return Outcome(Ending.stopped, duration=_since(started))
        return Outcome(
            Ending.timeout,
            error=f"timed out after {describe_seconds(spec.timeout)} "
            "waiting for a free function pool process",
            duration=_since(started),
        )


def _since(started: float) -> float:
    return time.monotonic() - started


class _Call:
    """One call in one pool process: send it, pump its output, watch clock and stop."""

    def __init__(
        self,
        process: PoolProcess,
        output: OutputSink,
        stop: StopSignal,
        deadline: float,
        grace: float,
    ) -> None:
        self.process = process
        self.output = output
        self.stop = stop
        self.deadline = deadline
        self.grace = grace
        self.read_fd = -1
        self.reusable = False
        self.run_id = 0

    def send(self, request: dict[str, Any]) -> bool:
        self.run_id = int(request["env"].get("SCHED_RUN_ID") or 0)
        read_fd, write_fd = os.pipe()
        try:
            self.process.send(request, write_fd)
        except OSError:
            os.close(read_fd)
            return False
        finally:
            os.close(write_fd)
        self.read_fd = read_fd
        return True

    def supervise(self) -> tuple[Ending | None, dict[str, Any] | None]:
        """Until the reply and end-of-file (or the process's end): (timeout or stopped
        when the worker ended it, else None; the reply, None if the process died)."""
        try:
            return self._supervise()
        finally:
            os.close(self.read_fd)

    def _supervise(self) -> tuple[Ending | None, dict[str, Any] | None]:
        sock_fd = self.process.sock.fileno()
        poller = select.poll()
        poller.register(sock_fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        poller.register(self.read_fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        killer = GroupKiller(RunMembers(self.process.pid, None, self.run_id))
        ended_by: Ending | None = None
        reply: dict[str, Any] | None = None
        gone = False  # the process closed its socket: it died or was killed
        eof = False
        done_at: float | None = None  # when the reply came or the process went
        while True:
            now = time.monotonic()
            if self.stop.is_set() and reply is None:
                ended_by = ended_by or Ending.stopped
                killer.terminate(kill_grace(self.stop, self.grace))
            elif ended_by is None and reply is None and now >= self.deadline:
                ended_by = Ending.timeout
                killer.terminate(self.grace)
            killer.tick()
            if (reply is not None or gone) and done_at is None:
                done_at = now
            if done_at is not None:
                if eof:
                    break
                if now - done_at >= EOF_WAIT:
                    killer.terminate(0)  # something the call started holds the output
                    break
            wait = SLICE
            if ended_by is None and reply is None:
                wait = min(wait, max(0.0, self.deadline - now))
            if killer.kill_at is not None and not killer.killed:
                wait = min(wait, max(0.0, killer.kill_at - now))
            if done_at is not None:
                wait = min(wait, max(0.0, done_at + EOF_WAIT - now))
            for fd, _event in poller.poll(wait * 1000):
                if fd == self.read_fd:
                    data = os.read(fd, READ_SIZE)
                    if data:
                        self.output.write(data)
                    else:
                        eof = True
                        poller.unregister(fd)
                elif fd == sock_fd:
                    try:
                        reply = self.process.receive() or reply
                    except (EOFError, ValueError):
                        gone = True
                        poller.unregister(fd)
                    if reply is not None and reply.get("dirty"):
                        killer.terminate(0)  # threads or processes the call left behind
        self.reusable = (
            reply is not None
            and ended_by is None
            and eof
            and not reply.get("dirty")
            and not killer.started
        )
        if ended_by is not None or killer.started:
            with contextlib.suppress(Exception):
                self._drain_output()
        return ended_by, reply

    def _drain_output(self) -> None:
        """What is left in the pipe after the group was killed (never blocks)."""
        os.set_blocking(self.read_fd, False)
        with contextlib.suppress(BlockingIOError):
            while data := os.read(self.read_fd, READ_SIZE):
                self.output.write(data)


def _outcome(
    spec: RunSpec,
    ending: Ending | None,
    reply: dict[str, Any] | None,
    process: PoolProcess,
    duration: float,
) -> Outcome:
    if ending is Ending.timeout:
        return Outcome(
            Ending.timeout,
            error=f"timed out after {describe_seconds(spec.timeout)}",
            duration=duration,
        )
    if ending is Ending.stopped:
        return Outcome(Ending.stopped, duration=duration)
    if reply is None:  # the process died during the call
        if process.proc.returncode is None:
            return Outcome(
                Ending.failed,
                error="the function pool process stopped answering",
                duration=duration,
            )
        return exit_outcome(process.proc.returncode, duration)
    cpu: float | None = reply.get("cpu_seconds")
    rss: float | None = reply.get("max_rss_mb")
    if "returned" in reply:
        outcome = Outcome(Ending.completed, exit_code=0, result=reply["returned"])
    elif "raised" in reply:
        outcome = Outcome(Ending.failed, exit_code=1, error=str(reply["raised"]))
    elif "exit" in reply:
        outcome = exit_outcome(int(reply["exit"]), duration)
    else:
        outcome = Outcome(Ending.failed, error=str(reply.get("refused")))
    return replace(outcome, duration=duration, cpu_seconds=cpu, max_rss_mb=rss)
