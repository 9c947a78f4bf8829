"""Run processes: timeouts and stops end the whole process group, nothing outlives a run."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from schedd.config import WorkerSettings
from schedd.executors.base import Ending, Outcome, StopReason, StopSignal
from schedd.executors.guard import Guard
from schedd.executors.python import PythonExecutor
from schedd.executors.shell import ShellExecutor
from tests.workerkit import Sink, alive, pids_in, spec, wait_until

# The shell prints its own pid and its background child's, then waits on a second child.
GRANDCHILDREN = "echo $$; sleep 300 & echo $!; sleep 300"


class Started:
    """Runs an executor in a thread, like the worker's run thread."""

    def __init__(self, command: str, *, grace: float = 1.0, timeout: float = 30.0) -> None:
        self.sink = Sink()
        self.stop = StopSignal()
        self.outcome: Outcome | None = None
        executor = ShellExecutor(WorkerSettings(kill_grace_seconds=grace))
        run_spec = spec(command, timeout=timeout)

        def target() -> None:
            self.outcome = executor.execute(run_spec, self.sink, self.stop)

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def pids(self, count: int) -> list[int]:
        assert wait_until(lambda: len(pids_in(self.sink.text)) >= count, 5)
        return pids_in(self.sink.text)

    def result(self, timeout: float) -> Outcome:
        self.thread.join(timeout)
        assert self.outcome is not None, "the executor did not return"
        return self.outcome


def test_timeout_kills_every_process_of_the_group() -> None:
    started = time.monotonic()
    run = Started(GRANDCHILDREN, timeout=1.0)
    pids = run.pids(2)
    outcome = run.result(10)
    assert outcome.ending is Ending.timeout
    assert outcome.error == "timed out after 1 s"
    assert time.monotonic() - started < 3
    assert not any(alive(pid) for pid in pids)


def test_cancel_kills_every_process_of_the_group_within_two_seconds() -> None:
    run = Started(GRANDCHILDREN)
    pids = run.pids(2)
    asked = time.monotonic()
    run.stop.stop(StopReason.cancelled)
    outcome = run.result(5)
    assert outcome.ending is Ending.stopped
    assert time.monotonic() - asked < 2
    assert not any(alive(pid) for pid in pids)


def test_a_process_ignoring_sigterm_is_killed_after_the_grace() -> None:
    run = Started("trap '' TERM; echo $$; sleep 300 & echo $!; wait", grace=0.5, timeout=0.5)
    pids = run.pids(2)
    outcome = run.result(10)
    assert outcome.ending is Ending.timeout
    assert not any(alive(pid) for pid in pids)


def test_cancel_waits_at_most_one_second_whatever_the_kill_grace() -> None:
    run = Started("trap '' TERM; echo $$; while :; do sleep 0.05; done", grace=30)
    pids = run.pids(1)
    asked = time.monotonic()
    run.stop.stop(StopReason.cancelled)
    run.result(5)
    assert time.monotonic() - asked < 2
    assert not alive(pids[0])


def test_a_lost_run_is_killed_at_once_without_sigterm() -> None:
    run = Started("trap 'echo got-term' TERM; echo $$; while :; do sleep 0.05; done", grace=30)
    pids = run.pids(1)
    run.stop.stop(StopReason.lost)
    outcome = run.result(3)
    assert outcome.ending is Ending.stopped
    assert "got-term" not in run.sink.text
    assert not alive(pids[0])


def test_what_the_command_leaves_running_in_the_background_ends_with_the_run() -> None:
    run = Started("sleep 300 & echo $!; exit 0")
    pids = run.pids(1)
    outcome = run.result(5)
    assert outcome.ending is Ending.completed
    assert not alive(pids[0])


def test_a_program_that_does_not_exist_fails_the_run_with_the_reason() -> None:
    executor = PythonExecutor(WorkerSettings(python_interpreter="/nonexistent/python3"))
    outcome = executor.execute(spec("script.py", executor="python"), Sink(), StopSignal())
    assert outcome.ending is Ending.failed
    assert outcome.error == "could not start '/nonexistent/python3': no such program"


def test_the_guard_kills_registered_groups_when_the_worker_goes_away() -> None:
    guard = Guard()
    guard.start()
    with subprocess.Popen(
        ["/bin/sh", "-c", GRANDCHILDREN], stdout=subprocess.PIPE, start_new_session=True
    ) as leader:
        assert leader.stdout is not None
        pids = [int(leader.stdout.readline()), int(leader.stdout.readline())]
        guard.add(leader.pid)
        guard.close()  # what the kernel does to the guard's pipe when the worker dies
        leader.wait(5)
    assert leader.returncode == -signal.SIGKILL
    assert wait_until(lambda: not any(alive(pid) for pid in pids), 5)


WORKER_SCRIPT = """
import sys
from schedd.config import WorkerSettings
from schedd.executors import launch
from schedd.executors.base import StopSignal
from schedd.executors.guard import Guard
from schedd.executors.shell import ShellExecutor
from tests.workerkit import spec

class Echo:
    def write(self, data):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()

command, mode = sys.argv[1:]
guard = None
if mode == "guard":
    guard = Guard()
    guard.start()
elif mode == "preexec":
    launch.setpriv_prefix = lambda: None  # no setpriv: prctl() in a preexec_fn
ShellExecutor(WorkerSettings(), guard).execute(spec(command), Echo(), StopSignal())
"""


def kill_a_worker_running(command: str, mode: str) -> list[int]:
    """Start a process running ``command`` as a worker would, SIGKILL it; the run's pids."""
    root = Path(__file__).resolve().parents[2]
    with subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, command, mode], stdout=subprocess.PIPE, cwd=root
    ) as worker:
        assert worker.stdout is not None
        pids = [int(worker.stdout.readline()), int(worker.stdout.readline())]
        assert all(alive(pid) for pid in pids)
        worker.send_signal(signal.SIGKILL)
        worker.wait(5)
    return pids


@pytest.mark.slow
def test_the_whole_group_dies_with_a_worker_killed_by_sigkill() -> None:
    # The shell dies of PR_SET_PDEATHSIG; its background child is killed by the guard.
    pids = kill_a_worker_running(GRANDCHILDREN, "guard")
    assert wait_until(lambda: not any(alive(pid) for pid in pids), 5)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["setpriv", "preexec"])
def test_the_direct_child_dies_with_its_worker_by_pdeathsig(mode: str) -> None:
    shell, _ = kill_a_worker_running("echo $$; echo $$; sleep 300", mode)
    assert wait_until(lambda: not alive(shell), 5)
