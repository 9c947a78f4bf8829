"""The guard's fence: it stops a worker's runs when the worker's heartbeats stop getting
through, without the worker's help (it may be frozen), and says which it killed."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from schedd.config import WorkerSettings
from schedd.executors.base import Ending, Outcome, StopReason, StopSignal
from schedd.executors.function import FunctionExecutor
from schedd.executors.guard import Guard
from schedd.executors.launch import launch_command
from schedd.executors.shell import ShellExecutor
from tests.unit.test_executor_process import GRANDCHILDREN, Started
from tests.workerkit import Sink, alive, pids_in, spec, wait_until

ROOT = Path(__file__).resolve().parents[2]


def run_with_guard(guard: Guard, command: str, stop: StopSignal) -> tuple[Sink, list[Outcome]]:
    sink, outcomes = Sink(), []
    executor = ShellExecutor(WorkerSettings(kill_grace_seconds=1), guard)
    thread = threading.Thread(
        target=lambda: outcomes.append(executor.execute(spec(command), sink, stop)), daemon=True
    )
    thread.start()
    return sink, outcomes


def test_the_guard_kills_the_runs_once_the_last_heartbeat_is_older_than_the_fence() -> None:
    guard = Guard()
    guard.start(fence_seconds=1.0, ok_at=time.monotonic())
    try:
        stop = StopSignal()
        sink, outcomes = run_with_guard(guard, GRANDCHILDREN, stop)
        assert wait_until(lambda: len(pids_in(sink.text)) >= 2, 5)
        pids = pids_in(sink.text)
        started = time.monotonic()
        assert wait_until(lambda: bool(outcomes), 5)
        assert 0.3 < time.monotonic() - started < 2.5
        assert not any(alive(pid) for pid in pids)
        # Reported as fenced (handed back), never as "killed by signal 9".
        assert outcomes[0].ending is Ending.stopped
        assert stop.reason is StopReason.fenced
    finally:
        guard.close()


def test_heartbeats_keep_the_runs_alive_and_a_fenced_guard_kills_new_runs_at_once() -> None:
    guard = Guard()
    guard.start(fence_seconds=0.6, ok_at=time.monotonic())
    try:
        stop = StopSignal()
        sink, outcomes = run_with_guard(guard, "echo $$; sleep 300", stop)
        for _ in range(10):  # 2 s of heartbeats every 0.2 s
            guard.heartbeat(time.monotonic())
            time.sleep(0.2)
        assert not outcomes and len(pids_in(sink.text)) == 1
        assert wait_until(lambda: bool(outcomes), 3)  # heartbeats stopped: fenced
        late_stop = StopSignal()
        _, late = run_with_guard(guard, "sleep 300", late_stop)
        assert wait_until(lambda: bool(late), 2)
        assert late_stop.reason is StopReason.fenced
        guard.heartbeat(time.monotonic())  # the database answers again
        _, fresh = run_with_guard(guard, "exit 3", StopSignal())
        assert wait_until(lambda: bool(fresh), 3)
        assert (fresh[0].ending, fresh[0].exit_code) == (Ending.failed, 3)
    finally:
        guard.close()


def test_a_run_that_ended_by_itself_keeps_its_outcome_when_the_fence_trips_later() -> None:
    # The first process exits 0 and leaves a child that ignores SIGTERM in its group
    # (killed after the grace);
    # the fence that comes meanwhile must not turn the finished run into a stopped one.
    run = Started("(trap '' TERM; exec sleep 300) & echo $!; exit 0", grace=3.0)
    (child,) = run.pids(1)
    time.sleep(0.5)
    run.stop.stop(StopReason.fenced)
    outcome = run.result(5)
    assert (outcome.ending, outcome.exit_code) == (Ending.completed, 0)
    assert not alive(child)


def function_executor(guard: Guard) -> FunctionExecutor:
    settings = WorkerSettings(
        kill_grace_seconds=1, working_directory=str(ROOT), function_pool_size=2
    )
    return FunctionExecutor(settings, guard)


def call(executor: FunctionExecutor, target: str, *arguments: object) -> tuple[Outcome, StopSignal]:
    stop = StopSignal()
    run = spec(
        f"tests.funcs:{target}",
        *[json.dumps(argument) for argument in arguments],
        executor="function",
        timeout=30,
    )
    return executor.execute(run, Sink(), stop), stop


def test_a_function_call_killed_by_the_fence_is_handed_back_not_failed() -> None:
    guard = Guard()
    guard.start(fence_seconds=1.0, ok_at=time.monotonic())
    executor = function_executor(guard)
    try:
        started = time.monotonic()
        outcome, stop = call(executor, "nap", 30)
        assert time.monotonic() - started < 5
        assert outcome.ending is Ending.stopped
        assert stop.reason is StopReason.fenced
    finally:
        executor.close()
        guard.close()


def test_a_call_sent_to_a_pool_the_fence_killed_is_handed_back_not_failed() -> None:
    # The fence trips while no call runs: the guard kills the idle pool processes, and
    # the next call finds them dead when it sends. That is the fence, not a failure
    # (CI saw "function pool processes died before they could take the call").
    guard = Guard()
    guard.start(fence_seconds=1.0, ok_at=time.monotonic())
    executor = function_executor(guard)
    try:
        pids = []
        for _ in range(2):
            pids.append(call(executor, "pid")[0].result)
            guard.heartbeat(time.monotonic())
        assert all(pids)
        assert wait_until(lambda: not any(alive(int(str(pid))) for pid in pids), 5)
        outcome, stop = call(executor, "pid")
        assert outcome.ending is Ending.stopped, outcome
        assert stop.reason is StopReason.fenced
    finally:
        executor.close()
        guard.close()


def test_a_run_registered_while_the_fence_holds_never_starts_its_command(
    tmp_path: Path,
) -> None:
    # A worker woken from a freeze past its fence: the guard kills whatever it is given,
    # and the gate must not let the command start in the moment before that kill.
    marker = tmp_path / "ran"
    guard = Guard()
    guard.start(fence_seconds=0.5, ok_at=time.monotonic() - 5)
    try:
        assert guard.fenced()
        stop = StopSignal()
        _, outcomes = run_with_guard(guard, f"touch {marker}", stop)
        assert wait_until(lambda: bool(outcomes), 5)
        assert outcomes[0].ending is Ending.stopped
        assert stop.reason is StopReason.fenced
        time.sleep(0.2)
        assert not marker.exists()
    finally:
        guard.close()


@pytest.mark.parametrize("said", [b"", b"no\n"])
def test_the_gate_runs_nothing_without_go(tmp_path: Path, said: bytes) -> None:
    # End-of-file (the worker died before registering the run) or anything but "go".
    marker = tmp_path / "ran"
    command, preexec = launch_command(["sh", "-c", f"touch {marker}"], gate=True)
    read, write = os.pipe()
    proc = subprocess.Popen(command, stdin=read, preexec_fn=preexec, start_new_session=True)
    os.close(read)
    os.write(write, said)
    os.close(write)
    assert proc.wait(10) == 125
    assert not marker.exists()


def test_the_gate_lets_the_command_run_on_go_with_dev_null_as_stdin(tmp_path: Path) -> None:
    out = tmp_path / "stdin"
    command, preexec = launch_command(["sh", "-c", f"cat > {out}; echo done >> {out}"], gate=True)
    read, write = os.pipe()
    proc = subprocess.Popen(command, stdin=read, preexec_fn=preexec, start_new_session=True)
    os.close(read)
    os.write(write, b"go\nthis is not for the task\n")
    assert proc.wait(10) == 0
    os.close(write)
    assert out.read_text() == "done\n"
