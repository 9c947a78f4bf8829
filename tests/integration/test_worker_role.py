"""The worker role in this process against a real database and real processes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from schedd.db import Database
from schedd.models import RunStatus, Worker, WorkerStatus
from schedd.services import output, runs, workers
from tests.workerkit import (
    add_run,
    alive,
    get_run,
    make_task,
    pids_in,
    running_worker,
    set_run,
    wait_for_status,
    wait_until,
)

GRANDCHILDREN = "echo $$; sleep 300 & echo $!; sleep 300"


def output_of(db: Database, run_id: int) -> str:
    with db.session() as session:
        return output.read(session, run_id).text


def wait_for_pids(db: Database, run_id: int, count: int) -> list[int]:
    assert wait_until(lambda: len(pids_in(output_of(db, run_id))) >= count, 5)
    return pids_in(output_of(db, run_id))


def worker_row(db: Database, worker_id: str) -> Worker:
    with db.session() as session:
        worker = session.get(Worker, worker_id)
        assert worker is not None
        return worker


def test_runs_end_with_status_exit_code_result_and_time(db: Database, tmp_path: Path) -> None:
    task = make_task(db, 'echo "hello $1 (attempt $SCHED_ATTEMPT)"; exit $2')
    ok = add_run(db, task, arguments=["world", "0"])
    bad = add_run(db, task, arguments=["again", "3"])
    with running_worker(db, tmp_path) as worker:
        done = wait_for_status(db, ok, "completed", 10)
        failed = wait_for_status(db, bad, "failed", 10)
    assert (done.exit_code, done.result, done.worker_id) == (
        0,
        "hello world (attempt 0)\n",
        worker.worker_id,
    )
    assert done.execution_time is not None and 0 < done.execution_time < 5
    assert done.completed_at is not None and done.started_at is not None
    assert (failed.exit_code, failed.error_message) == (3, "exited with status 3")
    assert output_of(db, bad) == "hello again (attempt 0)\n"


def test_a_worker_whose_row_was_deleted_registers_again(db: Database, tmp_path: Path) -> None:
    with running_worker(db, tmp_path) as worker:
        with db.session() as session:
            session.execute(sa.delete(Worker.__table__))  # type: ignore[attr-defined]
        assert wait_until(lambda: workers_count(db) == 1, 3)
        assert worker_row(db, worker.worker_id).status == WorkerStatus.active


def workers_count(db: Database) -> int:
    with db.session() as session:
        return int(session.execute(sa.text("SELECT count(*) FROM workers")).scalar_one())


def test_heartbeats_keep_the_worker_and_its_runs_fresh(db: Database, tmp_path: Path) -> None:
    run_id = add_run(db, make_task(db, "sleep 2"))
    with running_worker(db, tmp_path) as worker:
        wait_for_status(db, run_id, "running", 5)
        first = get_run(db, run_id).heartbeat_at
        assert wait_until(lambda: worker_row(db, worker.worker_id).current_task_count == 1, 3)
        assert wait_until(lambda: get_run(db, run_id).heartbeat_at != first, 3)
        row = worker_row(db, worker.worker_id)
        assert row.status == WorkerStatus.active
        assert row.load_average is not None and row.memory_usage and row.cpu_usage is not None
    assert worker_row(db, worker.worker_id).status == WorkerStatus.offline


@pytest.mark.slow
def test_a_cancelled_run_is_killed_with_its_group_within_two_seconds(
    db: Database, tmp_path: Path
) -> None:
    run_id = add_run(db, make_task(db, GRANDCHILDREN))
    with running_worker(db, tmp_path):
        wait_for_status(db, run_id, "running", 5)
        pids = wait_for_pids(db, run_id, 2)
        asked = time.monotonic()
        with db.session() as session:
            runs.cancel_run(session, run_id, actor="alice")
        run = wait_for_status(db, run_id, "cancelled", 2)
        assert time.monotonic() - asked < 2
    assert run.error_message == "cancelled by request"
    assert not any(alive(pid) for pid in pids)


@pytest.mark.slow
def test_a_run_past_its_timeout_is_killed_and_ends_as_timeout(db: Database, tmp_path: Path) -> None:
    run_id = add_run(db, make_task(db, GRANDCHILDREN, timeout_seconds=1))
    with running_worker(db, tmp_path):
        pids = wait_for_pids(db, run_id, 2)
        run = wait_for_status(db, run_id, "timeout", 5)
    assert run.error_message == "timed out after 1 s"
    assert not any(alive(pid) for pid in pids)


def count_by_status(db: Database) -> dict[str, int]:
    """One statement, so one consistent snapshot of the runs."""
    with db.session() as session:
        rows = session.execute(sa.text("SELECT status, count(*) FROM task_runs GROUP BY status"))
        return {status: count for status, count in rows}


@pytest.mark.slow
def test_no_more_than_max_concurrent_tasks_run_at_once(db: Database, tmp_path: Path) -> None:
    task = make_task(db, "sleep 0.3")
    for _ in range(5):
        add_run(db, task)
    most = 0
    with running_worker(db, tmp_path, max_concurrent_tasks="2"):
        deadline = time.monotonic() + 10
        while (counts := count_by_status(db)).get("completed") != 5:
            most = max(most, counts.get("running", 0))
            assert time.monotonic() < deadline, counts
            time.sleep(0.02)
    assert 1 <= most <= 2


def test_runs_of_executors_the_worker_does_not_offer_stay_pending(
    db: Database, tmp_path: Path
) -> None:
    python = add_run(db, make_task(db, "job.py", executor="python"))
    shell = add_run(db, make_task(db, "true"))
    with running_worker(db, tmp_path, executor_types='["shell"]'):
        wait_for_status(db, shell, "completed", 5)
        time.sleep(0.3)
    assert get_run(db, python).status == RunStatus.pending


@pytest.mark.slow
def test_a_run_reaped_as_lost_is_killed_and_never_overwritten(db: Database, tmp_path: Path) -> None:
    run_id = add_run(db, make_task(db, "echo $$; sleep 300; echo finished"))
    with running_worker(db, tmp_path):
        (pid,) = wait_for_pids(db, run_id, 1)
        set_run(db, run_id, status="lost", error_message="worker stopped heartbeating")
        assert wait_until(lambda: not alive(pid), 2)
        time.sleep(0.5)  # give a wrong final write the time to happen
    run = get_run(db, run_id)
    assert (run.status, run.error_message, run.exit_code) == (
        "lost",
        "worker stopped heartbeating",
        None,
    )


@pytest.mark.slow
def test_a_graceful_stop_lets_a_short_run_finish(db: Database, tmp_path: Path) -> None:
    run_id = add_run(db, make_task(db, "sleep 1; echo done"))
    with running_worker(db, tmp_path) as worker:
        wait_for_status(db, run_id, "running", 5)
        worker.stop(graceful=True)
        assert worker.join(10)
    run = get_run(db, run_id)
    assert (run.status, run.result) == ("completed", "done\n")
    assert worker_row(db, worker.worker_id).status == WorkerStatus.offline


@pytest.mark.slow
def test_a_drain_hands_back_runs_that_outlast_the_grace(db: Database, tmp_path: Path) -> None:
    run_id = add_run(db, make_task(db, GRANDCHILDREN))
    with running_worker(db, tmp_path, drain_grace_seconds="0.5") as worker:
        pids = wait_for_pids(db, run_id, 2)
        worker.stop(graceful=True)
        assert worker_row(db, worker.worker_id).status in ("active", "draining")
        assert worker.join(10)
    run = get_run(db, run_id)
    assert (run.status, run.worker_id, run.started_at) == ("pending", None, None)
    assert not any(alive(pid) for pid in pids)
    assert worker_row(db, worker.worker_id).status == WorkerStatus.offline


@pytest.mark.slow
def test_a_second_stop_kills_at_once_and_hands_back(db: Database, tmp_path: Path) -> None:
    task = make_task(db, "trap '' TERM; echo $$; sleep 300")
    run_id = add_run(db, task)
    slow = {"drain_grace_seconds": "60", "kill_grace_seconds": "60"}
    with running_worker(db, tmp_path, **slow) as worker:
        (pid,) = wait_for_pids(db, run_id, 1)
        worker.stop(graceful=True)
        time.sleep(0.3)
        asked = time.monotonic()
        worker.stop(graceful=False)
        assert worker.join(5)
        assert time.monotonic() - asked < 3
    assert get_run(db, run_id).status == RunStatus.pending
    assert not alive(pid)


@pytest.mark.slow
def test_an_operator_drain_stops_claiming_and_takes_the_worker_offline(
    db: Database, tmp_path: Path
) -> None:
    task = make_task(db, "sleep 0.5")
    first = add_run(db, task)
    with running_worker(db, tmp_path) as worker:
        wait_for_status(db, first, "running", 5)
        with db.session() as session:
            workers.drain_worker(session, worker.worker_id, actor="alice")
        assert worker.join(10)
        later = add_run(db, task)
        time.sleep(0.3)
    assert get_run(db, first).status == RunStatus.completed
    assert get_run(db, later).status == RunStatus.pending
    assert worker_row(db, worker.worker_id).status == WorkerStatus.offline


@pytest.mark.slow
def test_a_worker_that_cannot_heartbeat_past_its_fence_stops_its_runs_and_claiming(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "second-attempt"
    task = make_task(
        db, f"if [ -e {marker} ]; then echo again; exit 0; fi; touch {marker}; echo $$; sleep 300"
    )
    run_id = add_run(db, task)
    real_heartbeat = workers.heartbeat

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise sa.exc.OperationalError("UPDATE workers", {}, Exception("connection refused"))

    with running_worker(db, tmp_path) as worker:
        (pid,) = wait_for_pids(db, run_id, 1)
        monkeypatch.setattr(workers, "heartbeat", unreachable)
        fence = worker.ctx.settings.effective_fence_seconds
        assert wait_until(lambda: not alive(pid), fence + 1.5)
        # The guard process may kill the run a moment before the worker's own
        # heartbeat thread notices the same fence.
        assert wait_until(lambda: worker.heartbeat.fenced, 1.0)
        # Handed back (the database still answers the monitor), but not claimed again.
        wait_for_status(db, run_id, "pending", 3)
        time.sleep(0.5)
        assert get_run(db, run_id).status == RunStatus.pending
        monkeypatch.setattr(workers, "heartbeat", real_heartbeat)
        run = wait_for_status(db, run_id, "completed", 5)
    assert run.result == "again\n"
