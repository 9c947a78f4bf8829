"""Child processes of a run: start, feed output, time out, stop, and leave nothing behind.

Every run's process starts a new session (so it leads its own process group) with
PR_SET_PDEATHSIG(SIGKILL), so it dies with the worker thread that started it (set by
util-linux ``setpriv`` where it works, else by prctl() in a preexec_fn: see
:mod:`.launch`, which also drops privileges to the run user); the worker's
:class:`~schedd.executors.guard.Guard` kills the rest of the group then.
Timeout and stop send SIGTERM to the whole group and SIGKILL after the grace. When the
group's first process exits by itself, whatever it left running in the group (a
forgotten ``&``) gets the same treatment: a run ends with its process group.

The worker becomes a child subreaper, so processes orphaned inside a group are
re-parented to it and reaped here (otherwise, under an init that does not reap, they
would linger as zombies and the group would never look empty).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence

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
from schedd.executors.cgroups import CgroupError, Cgroups, NoCgroups, RunCgroup
from schedd.executors.guard import Guard, RunBinding
from schedd.executors.identity import RunUser, current_user
from schedd.executors.launch import launch_command
from schedd.executors.members import LEADERS, GroupKiller, RunMembers
from schedd.executors.runas import RunAsRefused, RunUsers, working_directory

log = logging.getLogger("schedd.executors")

PR_SET_CHILD_SUBREAPER = 36
READ_SIZE = 65_536
SLICE = 0.2  # longest wait between looks at the stop flag and the deadline
# After the group is gone, how long to wait for end-of-file on the output pipe (a
# process that left the group with setsid may hold it open forever).
EOF_WAIT = 1.0
SAMPLE_EVERY = 0.05  # how often a run's VmHWM is read (see _Waiter)

# The worker's variables a run gets (an allowlist: a secret added to the daemon's
# environment tomorrow never reaches tasks); the run user's HOME, USER, LOGNAME and
# SHELL, the SCHED_* run variables, ``worker.env_passthrough`` and the task's own
# ``environment`` complete it.
INHERITED_VARIABLES = frozenset({"PATH", "LANG", "LANGUAGE", "TZ"})
INHERITED_PREFIXES = ("LC_",)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_subreaper_lock = threading.Lock()
_subreaper = False


def become_subreaper() -> None:
    """Make this process adopt orphans of its run groups (Linux; once per process)."""
    global _subreaper
    with _subreaper_lock:
        if _subreaper or _libc is None:
            return
        if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            log.warning("cannot become a child subreaper: %s", os.strerror(ctypes.get_errno()))
        _subreaper = True


def child_environment(
    spec: RunSpec,
    extra: Mapping[str, str] | None = None,
    *,
    user: RunUser | None = None,
    passthrough: Iterable[str] = (),
) -> dict[str, str]:
    """A run's environment: the allowlist, then the task's variables, then SCHED_*.

    From the worker's environment only PATH, LANG, LANGUAGE, TZ, LC_* and the names in
    ``passthrough`` (``worker.env_passthrough``); HOME, USER, LOGNAME and SHELL are the
    run user's (``user``, default the worker's own); ``extra`` is the executor's
    (PYTHONUNBUFFERED); the task's ``environment`` may override all of those but not
    the SCHED_* run variables, which come last.
    """
    env = inherited_environment(user=user, passthrough=passthrough)
    env.update(extra or {})
    env.update(spec.task_environment)
    env.update(spec.environment())
    return env


def inherited_environment(
    *, user: RunUser | None = None, passthrough: Iterable[str] = ()
) -> dict[str, str]:
    """What every run process gets from the worker: the allowlist, ``passthrough``, and
    the run user's HOME, USER, LOGNAME and SHELL (also the function pool's base)."""
    allowed = set(passthrough)
    env = {
        key: value
        for key, value in os.environ.items()
        if key in INHERITED_VARIABLES or key.startswith(INHERITED_PREFIXES) or key in allowed
    }
    env.setdefault("PATH", DEFAULT_PATH)
    env.update((user or current_user()).variables())
    return env


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class ProcessExecutor(Executor):
    """Base of executors that run a program: subclasses say which argv."""

    def __init__(
        self, settings: WorkerSettings, guard: Guard | None = None, cgroups: Cgroups | None = None
    ) -> None:
        self.settings = settings
        self.guard = guard
        self.users = RunUsers.from_settings(settings)
        self.cgroups = cgroups or NoCgroups()

    @abstractmethod
    def argv(self, spec: RunSpec) -> list[str]: ...

    def extra_environment(self, spec: RunSpec) -> dict[str, str]:
        return {}

    def problem(self, spec: RunSpec, cwd: str) -> str | None:
        """Why the run cannot start in ``cwd`` (one sentence), found before starting."""
        return None

    def execute(self, spec: RunSpec, output: OutputSink, stop: StopSignal) -> Outcome:
        try:
            user = self.users.pick(spec.run_as)
            cwd = working_directory(user, spec.working_dir, self.settings.working_directory)
        except RunAsRefused as exc:
            return Outcome(Ending.failed, error=str(exc))
        problem = self.problem(spec, cwd)
        if problem is not None:
            return Outcome(Ending.failed, error=problem)
        env = child_environment(
            spec, self.extra_environment(spec), user=user, passthrough=self.settings.env_passthrough
        )
        try:
            cgroup = self.cgroups.create(f"run-{spec.run_id}-{os.getpid()}", spec.limits)
        except CgroupError as exc:
            return Outcome(Ending.failed, error=str(exc))
        try:
            return run_process(
                self.argv(spec),
                env=env,
                cwd=cwd,
                output=output,
                stop=stop,
                timeout=spec.timeout,
                grace=self.settings.kill_grace_seconds,
                guard=self.guard,
                user=user,
                cgroup=cgroup,
                run_id=spec.run_id,
                run=(
                    RunBinding(spec.run_id, spec.claim, spec.worker_id)
                    if spec.claim is not None
                    else None
                ),
            )
        finally:
            if cgroup is not None:
                cgroup.remove()


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    output: OutputSink,
    stop: StopSignal,
    timeout: float,
    grace: float,
    guard: Guard | None = None,
    user: RunUser | None = None,
    cgroup: RunCgroup | None = None,
    run_id: int = 0,
    run: RunBinding | None = None,
) -> Outcome:
    """Run ``argv`` in its own process group, as ``user`` (None: the worker's own, with
    no capabilities), until it and its group are gone."""
    become_subreaper()
    started = time.monotonic()
    program = argv[0]
    if ("/" not in program or os.path.isabs(program)) and not shutil.which(
        program, path=env.get("PATH", os.defpath)
    ):
        return Outcome(Ending.failed, error=f"could not start {program!r}: no such program")
    command, preexec = launch_command(
        argv, user, cgroup.procs_files if cgroup else (), gate=guard is not None
    )
    gate_read, gate_write = os.pipe() if guard is not None else (-1, -1)
    try:
        proc = subprocess.Popen(
            command,
            stdin=gate_read if guard is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            preexec_fn=preexec,
        )
    except OSError as exc:
        if guard is not None:
            os.close(gate_write)
        return Outcome(
            Ending.failed,
            error=f"could not start {argv[0]!r}: {exc.strerror or exc}",
            duration=time.monotonic() - started,
        )
    finally:
        if guard is not None:
            os.close(gate_read)
    pgid = proc.pid  # a new session's leader leads its own process group
    members = RunMembers(pgid, cgroup, run_id)
    LEADERS.add(pgid)
    refused = False
    if guard is not None:
        guard.add(pgid, str(cgroup.kill_directory) if cgroup else None, run=run)
        # The command starts only now that the guard knows its group, and only if the
        # fence does not hold (a worker woken from a freeze must not start anything).
        refused = guard.fenced()
        with contextlib.suppress(OSError):
            if not refused:
                os.write(gate_write, b"go\n")
        os.close(gate_write)
        if refused:
            stop.stop(StopReason.fenced, immediate=True)
    try:
        waiter = _Waiter(proc)
        waiter.sample([pgid])  # what exec left (Popen returns once the exec is done)
        ending, returncode = _supervise(waiter, members, output, stop, started + timeout, grace)
    finally:
        assert proc.stdout is not None
        proc.stdout.close()
        LEADERS.discard(pgid)  # its status is collected (or it is killed just below)
        members.kill_and_reap()  # what the run left behind, and its zombies
        if guard is not None:
            guard.remove(pgid)
    duration = time.monotonic() - started
    if refused:
        return Outcome(Ending.stopped, duration=duration)  # the command never started
    if guard is not None and ending is None and returncode == -signal.SIGKILL:
        fenced = guard.killed(pgid)
        guard.forget(pgid)
        if fenced:
            # The guard ended it: the worker was fenced (frozen or cut off), the run
            # did not end by itself and must not be reported as if it had.
            stop.stop(StopReason.fenced, immediate=True)
            return Outcome(Ending.stopped, duration=duration)
    if ending is Ending.timeout:
        outcome = Outcome(
            Ending.timeout, error=f"timed out after {describe_seconds(timeout)}", duration=duration
        )
    elif ending is Ending.stopped:
        outcome = Outcome(Ending.stopped, duration=duration)
    else:
        outcome = exit_outcome(returncode, duration)
    return with_cost(outcome, cgroup, waiter.rusage, waiter.peak_kib())


def with_cost(
    outcome: Outcome,
    cgroup: RunCgroup | None,
    rusage: resource.struct_rusage | None,
    peak_kib: int | None,
) -> Outcome:
    """The outcome with what the run cost (its cgroup's counters, else the first
    process's wait4 rusage, which covers the children it waited for, with the peak
    memory :meth:`_Waiter.peak_kib` settled on), and a memory limit kill named as such."""
    if cgroup is None:
        if rusage is None:
            return outcome
        cpu = rusage.ru_utime + rusage.ru_stime
        mb = None if peak_kib is None else peak_kib / 1024
        return dataclasses.replace(outcome, cpu_seconds=cpu, max_rss_mb=mb)
    usage = cgroup.usage()
    # A counter the cgroup does not keep (a hybrid run without a memory limit joins
    # no memory hierarchy) comes from wait4.
    fallback = with_cost(outcome, None, rusage, peak_kib)
    outcome = dataclasses.replace(
        outcome,
        cpu_seconds=usage.cpu_seconds if usage.cpu_seconds is not None else fallback.cpu_seconds,
        max_rss_mb=usage.max_rss_mb if usage.max_rss_mb is not None else fallback.max_rss_mb,
    )
    limit = cgroup.limits.memory_max_mb
    if usage.oom_kills and limit is not None and outcome.ending is Ending.failed:
        error = f"killed: out of memory (limit {limit} MB)"
        outcome = dataclasses.replace(outcome, error=error)
    return outcome


class _Waiter:
    """Collects the first process's exit with wait4, keeping its resource usage.

    Linux starts a process's ``ru_maxrss`` at the high-water mark of the memory it
    exec'd from, and a run's first process is (v)forked from the worker: wait4's
    ``ru_maxrss`` is max(the run's peak, the worker's). Above the worker's own peak
    it is the run's; at or below it, the run's peak is the largest ``VmHWM`` (a
    process's own memory since exec) of its processes, read while they run
    (:meth:`sample`, every SAMPLE_EVERY seconds), which is what ``ru_maxrss`` means
    (the largest single process, not a sum).
    """

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.rusage: resource.struct_rusage | None = None
        self.sampled_kib: int | None = None

    def sample(self, pids: Iterable[int]) -> None:
        """Note the memory high-water mark of the run's processes that still run."""
        for pid in pids:
            kib = _high_water_kib(pid)
            if kib is not None:
                self.sampled_kib = max(self.sampled_kib or 0, kib)

    def peak_kib(self) -> int | None:
        """The run's peak resident memory in KiB, as well as it can be told."""
        if self.rusage is None:
            return self.sampled_kib
        # The worker's peak now is at least what it was when the run exec'd (a peak
        # only grows; read before the spawn, another thread could still raise it).
        if self.rusage.ru_maxrss > resource.getrusage(resource.RUSAGE_SELF).ru_maxrss:
            return self.rusage.ru_maxrss
        # At most the worker's: the samples, or unknown when the run ended before
        # its first one (never the worker's own memory under the run's name).
        return self.sampled_kib

    def poll(self) -> int | None:
        if self.proc.returncode is not None:
            return self.proc.returncode
        try:
            pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
        except ChildProcessError:
            return self.proc.poll()
        if pid == 0:
            return None
        self.rusage = rusage
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        return self.proc.returncode


def _high_water_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None  # a zombie, or a kernel thread: no memory of its own


def exit_outcome(returncode: int, duration: float) -> Outcome:
    """completed for 0; failed with the status or the signal otherwise."""
    if returncode == 0:
        return Outcome(Ending.completed, exit_code=0, duration=duration)
    if returncode < 0:
        number = -returncode
        return Outcome(
            Ending.failed,
            exit_code=128 + number,
            error=f"killed by signal {number} ({signal_name(number)})",
            duration=duration,
        )
    return Outcome(
        Ending.failed,
        exit_code=returncode,
        error=f"exited with status {returncode}",
        duration=duration,
    )


def _supervise(
    waiter: _Waiter,
    members: RunMembers,
    output: OutputSink,
    stop: StopSignal,
    deadline: float,
    grace: float,
) -> tuple[Ending | None, int]:
    """Pump output and watch the clock and ``stop`` until the group and pipe are done.

    Returns (timeout or stopped when the worker ended it, else None; the exit status).
    """
    proc = waiter.proc
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    killer = GroupKiller(members)
    ended_by: Ending | None = None
    eof = False
    returncode: int | None = None
    group_gone_at: float | None = None
    nap = 0.001
    sample_at = time.monotonic() + SAMPLE_EVERY
    while True:
        now = time.monotonic()
        if returncode is None:
            returncode = waiter.poll()
        if returncode is None and now >= sample_at:
            waiter.sample(members.pids())
            sample_at = now + SAMPLE_EVERY
        if stop.is_set():
            # A run whose first process already ended by itself keeps that outcome: a
            # stop that comes later (a fence) only ends what it left in the group.
            if ended_by is None and returncode is None:
                ended_by = Ending.stopped
            killer.terminate(kill_grace(stop, grace))
        elif ended_by is None and now >= deadline:
            ended_by = Ending.timeout
            killer.terminate(grace)
        killer.tick()
        members.track()

        if returncode is None:
            returncode = waiter.poll()
        if returncode is not None:
            if group_gone_at is None:
                if members.alive():
                    killer.terminate(grace)  # the leader is done: end what it left behind
                else:
                    group_gone_at = now
            if group_gone_at is not None and (eof or now - group_gone_at >= EOF_WAIT):
                return ended_by, returncode

        wait = SLICE
        if ended_by is None:
            wait = min(wait, max(0.0, deadline - now))
        if killer.kill_at is not None and not killer.killed:
            wait = min(wait, max(0.0, killer.kill_at - now))
        if not eof:
            if poller.poll(wait * 1000):
                data = os.read(fd, READ_SIZE)
                if data:
                    output.write(data)
                else:
                    eof = True
                    poller.unregister(fd)

        elif returncode is None:
            # Still running after ``wait``: look at stop and the deadline again.
            # The pipe closes a moment before the exit can be collected: look again
            # soon, then less often.
            time.sleep(min(wait, nap))
            nap = min(nap * 2, 0.01)
            returncode = waiter.poll()
        else:
            # Leftovers are being killed, or the exits are still being counted (a
            # cgroup says populated for a moment after its last process exits).
            time.sleep(min(wait, nap))
            nap = min(nap * 2, 0.05)
