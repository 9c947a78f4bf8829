"""A command that ended is never run again because its worker died or froze before
writing its report (issue 13), with real `schedd run` processes on PostgreSQL.

A command that ends while its worker is already frozen (SIGSTOP) is not even reaped:
the guard reads its exit status at the fence and records it. The frozen worker, woken,
finds the run recorded and carries on.

The worker writes a run's end a few milliseconds after it reaps the command, too soon
to stop it in between from outside. So the database refuses connections while the
command ends: the worker's report fails (its log says so, and by then the outcome is
with the guard, which the worker tells before it queues the report), and the worker is
then killed with SIGKILL, or frozen with SIGSTOP past the heartbeat timeout. Its guard
must record the outcome once the database answers, before the reaper would declare the
attempt lost: the run ends completed, its command ran once, and nothing is retried.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest

from schedd.models import RunStatus, WorkerStatus
from tests.faultkit import Cluster, database_outage
from tests.workerkit import add_run, make_task, wait_for_status, wait_until

pytestmark = [pytest.mark.external_service, pytest.mark.slow]

TIMINGS = {
    "SCHEDD_WORKER__HEARTBEAT_INTERVAL": "0.5",
    "SCHEDD_WORKER__FENCE_SECONDS": "3",
    "SCHEDD_SCHEDULER__HEARTBEAT_TIMEOUT": "5",
}
# Waits for the test's go file, then records that it ran (and which attempt).
JOB = 'while [ ! -e "$1" ]; do sleep 0.05; done; echo "ran $SCHED_ATTEMPT" >> "$2"'
REPORT_FAILED = "worker monitor: write_reports failed"


def command_started(worker_pid: int, go: Path) -> bool:
    """The run's shell (given the go file's path as an argument) is under the worker."""
    for child in psutil.Process(worker_pid).children(recursive=True):
        try:
            if str(go) in child.cmdline():
                return True
        except psutil.Error:
            continue
    return False


def ledger(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def end_the_command_while_the_report_cannot_be_written(
    cluster: Cluster, tmp_path: Path, at_fault: signal.Signals
) -> tuple[int, int]:
    """Start a run, let its command end during a database outage, then send the worker
    ``at_fault`` while its report is still unwritten; returns (task id, run id)."""
    go, done = tmp_path / "go", tmp_path / "ledger"
    cluster.start("scheduler", **TIMINGS)
    worker, worker_id = cluster.start_worker(**TIMINGS)
    task = make_task(
        cluster.db, JOB, arguments=[str(go), str(done)], retry_count=2, retry_delay_seconds=0
    )
    run_id = add_run(cluster.db, task)
    assert wait_for_status(cluster.db, run_id, "running", 15).worker_id == worker_id
    with database_outage(cluster.url):
        cluster.db.dispose()
        go.touch()
        assert wait_until(lambda: ledger(done) == ["ran 0"], 10), cluster.logs()
        assert wait_until(lambda: REPORT_FAILED in cluster.logs(), 10), cluster.logs()
        worker.send_signal(at_fault)
        if at_fault is signal.SIGKILL:
            worker.wait(10)
        time.sleep(1.0)
    return task, run_id


def assert_ran_once(cluster: Cluster, task: int, run_id: int, done: Path) -> None:
    run = wait_for_status(cluster.db, run_id, {"completed", "lost"}, 30)
    assert (run.status, run.exit_code) == (RunStatus.completed, 0), cluster.logs()
    time.sleep(1.0)  # a retry, were there one, would have been created by now
    assert [r.id for r in cluster.runs_of(task)] == [run_id], cluster.logs()
    assert ledger(done) == ["ran 0"]
    assert f"recorded the outcome of run(s) {run_id}" in cluster.logs()


def test_a_worker_killed_after_the_command_ended_does_not_have_it_run_again(
    cluster: Cluster, tmp_path: Path
) -> None:
    task, run_id = end_the_command_while_the_report_cannot_be_written(
        cluster, tmp_path, signal.SIGKILL
    )
    assert_ran_once(cluster, task, run_id, tmp_path / "ledger")
    assert "the worker is gone: recording 1 run outcome(s)" in cluster.logs()


def test_a_worker_frozen_after_the_command_ended_finds_it_recorded_when_it_wakes(
    cluster: Cluster, tmp_path: Path
) -> None:
    task, run_id = end_the_command_while_the_report_cannot_be_written(
        cluster, tmp_path, signal.SIGSTOP
    )
    worker = cluster.procs[-1]
    worker_id = cluster.runs_of(task)[0].worker_id or ""
    # Frozen past the heartbeat timeout: reaped (offline), its run recorded by the guard.
    assert wait_until(
        lambda: (w := cluster.worker(worker_id)) is not None and w.status == WorkerStatus.offline,
        30,
    ), cluster.logs()
    assert_ran_once(cluster, task, run_id, tmp_path / "ledger")
    assert "no heartbeat past the fence: recording 1 run outcome(s)" in cluster.logs()

    worker.send_signal(signal.SIGCONT)
    assert wait_until(lambda: "recorded by this worker's guard" in cluster.logs(), 15), (
        cluster.logs()
    )
    assert worker.poll() is None  # it carries on as a healthy worker
    assert cluster.runs_of(task)[0].status == RunStatus.completed


def test_a_command_that_ends_while_its_worker_is_frozen_is_recorded_not_run_again(
    cluster: Cluster, tmp_path: Path
) -> None:
    go, done = tmp_path / "go", tmp_path / "ledger"
    cluster.start("scheduler", **TIMINGS)
    worker, worker_id = cluster.start_worker(**TIMINGS)
    task = make_task(
        cluster.db, JOB, arguments=[str(go), str(done)], retry_count=2, retry_delay_seconds=0
    )
    run_id = add_run(cluster.db, task)
    assert wait_for_status(cluster.db, run_id, "running", 15).worker_id == worker_id
    # "running" is written at the claim, before the spawn: freeze only once the command
    # runs (on a loaded machine the worker may not have started it yet).
    assert wait_until(lambda: command_started(worker.pid, go), 15), cluster.logs()
    worker.send_signal(signal.SIGSTOP)
    go.touch()  # the command ends well inside the fence time; nobody reaps it
    assert wait_until(lambda: ledger(done) == ["ran 0"], 10), cluster.logs()
    assert_ran_once(cluster, task, run_id, done)
    assert f"run {run_id} ended (completed, exit code 0) but its worker has not reaped it" in (
        cluster.logs()
    )

    worker.send_signal(signal.SIGCONT)
    assert wait_until(lambda: "recorded by this worker's guard" in cluster.logs(), 15), (
        cluster.logs()
    )
    assert wait_until(
        lambda: (w := cluster.worker(worker_id)) is not None and w.status == WorkerStatus.active, 10
    ), cluster.logs()
    assert worker.poll() is None  # it carries on as a healthy worker
    assert [r.status for r in cluster.runs_of(task)] == [RunStatus.completed]
    assert ledger(done) == ["ran 0"]
