"""The function executor: calls in real pool processes, and the pool that runs them.

What every executor promises (timeout, cancel, output and its cap, exit statuses) is in
test_executor_contract.py; these are the function executor's own semantics.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schedd.config import WorkerSettings
from schedd.executors.base import Ending, Outcome, StopSignal
from schedd.executors.function import FunctionExecutor
from tests.workerkit import Sink, alive, spec, wait_until

ROOT = Path(__file__).resolve().parents[2]


class Pool:
    """A function executor working from the checkout (so ``tests.funcs`` imports)."""

    def __init__(self, **settings: Any) -> None:
        values: dict[str, Any] = {
            "kill_grace_seconds": 1,
            "working_directory": str(ROOT),
            "function_pool_size": 1,
        }
        values.update(settings)
        self.executor = FunctionExecutor(WorkerSettings(**values))

    def call(
        self, target: str, *arguments: Any, timeout: float = 10, **fields: Any
    ) -> tuple[Outcome, str]:
        sink = Sink()
        run = spec(
            f"tests.funcs:{target}",
            *[json.dumps(argument) for argument in arguments],
            executor="function",
            timeout=timeout,
            **fields,
        )
        return self.executor.execute(run, sink, StopSignal()), sink.text

    def pid(self) -> int:
        outcome, _ = self.call("pid")
        assert outcome.result is not None
        return int(outcome.result)


@pytest.fixture
def pool() -> Iterator[Pool]:
    made = Pool()
    yield made
    made.executor.close()


def test_arguments_are_json_documents_passed_positionally(pool: Pool) -> None:
    outcome, _ = pool.call("echo", 1, "a b", {"k": [2, None]}, True)
    assert (outcome.ending, outcome.exit_code) == (Ending.completed, 0)
    assert json.loads(outcome.result or "") == [1, "a b", {"k": [2, None]}, True]


def test_the_return_value_is_the_result_and_the_output_is_kept(pool: Pool) -> None:
    outcome, output = pool.call("shout", "hi")
    assert outcome.ending is Ending.completed
    assert outcome.result == '"HI"'
    assert output == "hi\nerr:hi\n"


def test_no_return_value_leaves_the_result_to_the_output(pool: Pool) -> None:
    outcome, output = pool.call("write", "only output")
    assert (outcome.ending, outcome.result, output) == (Ending.completed, None, "only output")


def test_a_value_json_cannot_hold_is_shown_by_its_repr(pool: Pool) -> None:
    outcome, _ = pool.call("unserialisable")
    assert (outcome.ending, outcome.result) == (Ending.completed, "{1, 2}")


def test_an_async_function_is_run_to_its_end(pool: Pool) -> None:
    outcome, _ = pool.call("coroutine", 21)
    assert (outcome.ending, outcome.result) == (Ending.completed, "42")


def test_an_exception_fails_the_run_with_its_type_message_and_traceback(pool: Pool) -> None:
    outcome, output = pool.call("fail", "bad input")
    assert (outcome.ending, outcome.exit_code) == (Ending.failed, 1)
    assert outcome.error == "ValueError: bad input"
    assert output.startswith("Traceback (most recent call last):\n")
    assert 'tests/funcs.py", line' in output and "in fail" in output
    assert "funcpool.py" not in output  # the pool's own frame is not the task's business
    assert output.endswith("ValueError: bad input\n")


@pytest.mark.parametrize(
    ("code", "ending", "exit_code", "output"),
    [
        (None, Ending.completed, 0, ""),
        (0, Ending.completed, 0, ""),
        (3, Ending.failed, 3, ""),
        ("giving up", Ending.failed, 1, "giving up\n"),
    ],
)
def test_system_exit_ends_the_run_as_a_process_exit_would(
    pool: Pool, code: Any, ending: Ending, exit_code: int, output: str
) -> None:
    outcome, text = pool.call("exit_with", code)
    assert (outcome.ending, outcome.exit_code, text) == (ending, exit_code, output)
    if ending is Ending.failed:
        assert outcome.error == f"exited with status {exit_code}"


def test_the_process_survives_exceptions_and_exits(pool: Pool) -> None:
    first = pool.pid()
    pool.call("fail", "x")
    pool.call("exit_with", 2)
    assert pool.pid() == first


def test_a_hard_exit_fails_with_its_status_and_the_process_is_replaced(pool: Pool) -> None:
    first = pool.pid()
    outcome, _ = pool.call("hard_exit", 4)
    assert (outcome.ending, outcome.exit_code) == (Ending.failed, 4)
    assert outcome.error == "exited with status 4"
    assert not alive(first)
    assert pool.pid() != first


def test_a_crash_fails_naming_the_signal_and_the_process_is_replaced(pool: Pool) -> None:
    first = pool.pid()
    outcome, _ = pool.call("crash")
    assert (outcome.ending, outcome.exit_code) == (Ending.failed, 139)
    assert outcome.error == "killed by signal 11 (SIGSEGV)"
    assert pool.pid() != first


def test_c_level_writes_and_subprocess_output_are_captured(pool: Pool) -> None:
    outcome, output = pool.call("c_level_write", "from C\n")
    assert outcome.ending is Ending.completed
    assert output == "from C\nfrom C\n"
    outcome, output = pool.call("subprocess_echo", "from a child", run_id=41)
    assert (outcome.ending, output) == (Ending.completed, "from a child\n41\n")


def test_the_run_variables_are_set_during_the_call(pool: Pool) -> None:
    names = ["SCHED_RUN_ID", "SCHED_TASK_ID", "SCHED_TASK_NAME", "SCHED_ATTEMPT"]
    outcome, _ = pool.call("environment", *names, run_id=12, attempt=2)
    assert json.loads(outcome.result or "") == {
        "SCHED_RUN_ID": "12",
        "SCHED_TASK_ID": "3",
        "SCHED_TASK_NAME": "nightly-report",
        "SCHED_ATTEMPT": "2",
    }


def test_the_run_variables_are_gone_after_the_call(tmp_path: Path) -> None:
    pool = Pool(max_runs_per_process=1)  # the process exits right after the call
    report = tmp_path / "at-exit"
    try:
        outcome, _ = pool.call("environment_at_exit", str(report), run_id=12)
        assert outcome.ending is Ending.completed
        assert wait_until(report.exists, 10)
        assert report.read_text() == "None"
    finally:
        pool.executor.close()


def test_the_function_sees_the_run_environment_not_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secret@db/sched")
    monkeypatch.setenv("SCHEDD_WORKER__ID", "w1")
    monkeypatch.setenv("PLAIN_VARIABLE", "not allowed")
    monkeypatch.setenv("PASSED_VARIABLE", "passed")
    pool = Pool(env_passthrough=["PASSED_VARIABLE"])
    names = ["DATABASE_URL", "SCHEDD_WORKER__ID", "PLAIN_VARIABLE", "PASSED_VARIABLE", "MINE"]
    try:
        outcome, _ = pool.call("environment", *names, task_environment={"MINE": "task's"})
        assert json.loads(outcome.result or "") == {
            "DATABASE_URL": None,
            "SCHEDD_WORKER__ID": None,
            "PLAIN_VARIABLE": None,
            "PASSED_VARIABLE": "passed",
            "MINE": "task's",
        }
        outcome, _ = pool.call("environment", "MINE")
        assert json.loads(outcome.result or "") == {"MINE": None}  # restored after the call
    finally:
        pool.executor.close()


def test_a_task_working_dir_is_the_calls_directory(pool: Pool, tmp_path: Path) -> None:
    outcome, _ = pool.call("cwd", working_dir=str(tmp_path))
    assert outcome.result == json.dumps(str(tmp_path))
    outcome, _ = pool.call("cwd")
    assert outcome.result == json.dumps(str(ROOT))


def test_a_task_asking_for_another_run_user_is_refused(pool: Pool) -> None:
    outcome, _ = pool.call("noop", run_as="nobody")
    assert outcome.ending is Ending.failed
    assert outcome.error is not None and "run_as 'nobody'" in outcome.error


def test_the_working_directory_is_restored_after_a_call_changes_it(
    pool: Pool, tmp_path: Path
) -> None:
    outcome, _ = pool.call("change_directory", str(tmp_path))
    assert outcome.result == json.dumps(str(tmp_path))
    outcome, _ = pool.call("cwd")
    assert outcome.result == json.dumps(str(ROOT))


def test_a_process_is_recycled_after_max_runs_per_process() -> None:
    pool = Pool(max_runs_per_process=3)
    try:
        pids = [pool.pid() for _ in range(7)]
        assert pids[0] == pids[1] == pids[2]
        assert pids[3] == pids[4] == pids[5]
        assert len(set(pids)) == 3
        assert wait_until(lambda: not alive(pids[0]), 5)
    finally:
        pool.executor.close()


def test_a_timed_out_call_takes_its_process_with_it(pool: Pool) -> None:
    first = pool.pid()
    outcome, output = pool.call("print_pids_then_sleep", timeout=1)
    assert outcome.ending is Ending.timeout
    child = int(output.split()[1])
    assert wait_until(lambda: not alive(first) and not alive(child), 3)
    assert pool.pid() != first


@pytest.mark.parametrize("target", ["leave_a_process", "leave_a_thread"])
def test_a_call_that_leaves_something_running_completes_and_its_process_is_replaced(
    pool: Pool, target: str
) -> None:
    first = pool.pid()
    outcome, output = pool.call(target)
    assert outcome.ending is Ending.completed
    assert outcome.duration < 1
    if target == "leave_a_process":
        assert wait_until(lambda: not alive(int(output)), 3)
    assert wait_until(lambda: not alive(first), 3)
    assert pool.pid() != first


@pytest.mark.parametrize(
    ("command", "arguments", "error"),
    [
        ("tests.funcs", [], "exactly one ':'"),
        ("tests.funcs:__class__", [], "names starting with '__' are not allowed"),
        ("tests.funcs:echo", ["{bad"], "arguments[0] is not JSON"),
    ],
)
def test_a_malformed_call_fails_without_reaching_a_process(
    pool: Pool, command: str, arguments: list[str], error: str
) -> None:
    run = spec(command, *arguments, executor="function")
    outcome = pool.executor.execute(run, Sink(), StopSignal())
    assert outcome.ending is Ending.failed and outcome.exit_code is None
    assert outcome.error is not None and error in outcome.error
    assert pool.executor.pool.pids() == []  # no process was even started


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ("tests.nope:f", "cannot import tests.nope:f: ModuleNotFoundError: No module named"),
        ("tests.funcs:missing", "cannot import tests.funcs:missing: AttributeError"),
        ("tests.funcs:not_callable", "cannot import tests.funcs:not_callable: TypeError"),
    ],
)
def test_a_function_that_cannot_be_imported_fails_the_run_naming_why(
    pool: Pool, command: str, error: str
) -> None:
    run = spec(command, executor="function")
    outcome = pool.executor.execute(run, Sink(), StopSignal())
    assert outcome.ending is Ending.failed and outcome.exit_code is None
    assert outcome.error is not None and outcome.error.startswith(error)


def test_the_pool_size_caps_concurrent_calls_and_a_waiting_run_can_time_out(pool: Pool) -> None:
    busy: list[Outcome] = []
    thread = threading.Thread(
        target=lambda: busy.append(pool.call("print_pids_then_sleep", timeout=2)[0])
    )
    thread.start()
    time.sleep(0.5)
    outcome, _ = pool.call("noop", timeout=0.5)
    assert outcome.ending is Ending.timeout
    assert outcome.error == "timed out after 0.5 s waiting for a free function pool process"
    thread.join(10)
    assert busy[0].ending is Ending.timeout


def test_an_interpreter_that_cannot_run_the_pool_fails_runs_with_the_reason() -> None:
    pool = Pool(python_interpreter="/bin/false")
    try:
        outcome, _ = pool.call("noop", timeout=30)
        assert outcome.ending is Ending.failed
        assert outcome.error is not None
        assert outcome.error.startswith("function pool processes exited before they were ready")
        assert "'/bin/false' Python 3.11 or newer?" in outcome.error
    finally:
        pool.executor.close()


def test_a_task_with_resource_limits_is_refused_naming_them(pool: Pool) -> None:
    from schedd.executors.cgroups import Limits

    outcome, _ = pool.call("noop", limits=Limits(memory_max_mb=64, pids_max=10))
    assert outcome.ending is Ending.failed
    assert outcome.error is not None
    assert "cannot have its own memory_max_mb, pids_max: the run is not started" in outcome.error


def test_a_call_reports_its_cpu_time_and_the_process_peak_memory(pool: Pool) -> None:
    outcome, _ = pool.call("burn_cpu", 0.2)
    assert outcome.ending is Ending.completed
    assert outcome.cpu_seconds is not None and 0.1 <= outcome.cpu_seconds < 5
    assert outcome.max_rss_mb is not None and outcome.max_rss_mb > 1
