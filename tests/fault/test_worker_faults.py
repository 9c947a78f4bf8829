"""Worker faults with real `schedd run` processes on PostgreSQL.

A worker killed with SIGKILL (before or after its first heartbeat) and a worker asked
to stop with SIGTERM in the middle of a run. (A worker stopped with SIGSTOP past the
heartbeat timeout: test_frozen_worker.py and test_held_outcomes.py.) The scheduler
process (`schedd run --role scheduler`) reaps and retries; the worker processes are the
real daemon.
"""

from __future__ import annotations

import signal
import time

import pytest
import sqlalchemy as sa

from schedd.db import Database
from schedd.models import RunStatus, TaskRun, WorkerStatus
from schedd.services import workers
from tests.faultkit import Cluster
from tests.workerkit import add_run, alive, get_run, make_task, pids_in, wait_for_status, wait_until

pytestmark = [pytest.mark.external_service, pytest.mark.slow]

# The first attempt starts a process group and waits; the retry finishes at once.
FIRST_ATTEMPT_HANGS = (
    'if [ "$SCHED_ATTEMPT" = 0 ]; then echo $$; sleep 300 & echo $!; sleep 300; fi; '
    'echo "done on attempt $SCHED_ATTEMPT"'
)


def claimed_by(db: Database, run_id: int, worker_id: str, timeout: float = 10) -> TaskRun:
    run = wait_for_status(db, run_id, "running", timeout)
    assert run.worker_id == worker_id
    return run


def wait_for_pids(cluster: Cluster, run_id: int, count: int) -> list[int]:
    assert wait_until(lambda: len(pids_in(cluster.output(run_id))) >= count, 5), cluster.logs()
    return pids_in(cluster.output(run_id))


def retried_and_completed(cluster: Cluster, task_id: int, first: int, by: str) -> None:
    """The first run ended lost; its retry completed on worker ``by``; nothing else ran."""
    lost = wait_for_status(cluster.db, first, "lost", 10)
    assert lost.error_message is not None and "stopped heartbeating" in lost.error_message
    assert wait_until(lambda: len(cluster.runs_of(task_id)) == 2, 10), cluster.logs()
    retry = cluster.runs_of(task_id)[1]
    assert (retry.parent_run_id, retry.retry_count) == (first, 1)
    done = wait_for_status(cluster.db, retry.id or 0, "completed", 15)
    assert done.worker_id == by
    assert done.result == "done on attempt 1\n"


def test_a_worker_killed_mid_run_takes_its_processes_along_and_the_retry_runs_elsewhere(
    cluster: Cluster,
) -> None:
    cluster.start("scheduler")
    worker_a, a = cluster.start_worker()
    task = make_task(cluster.db, FIRST_ATTEMPT_HANGS, retry_count=1, retry_delay_seconds=0)
    first = add_run(cluster.db, task)
    claimed_by(cluster.db, first, a)
    pids = wait_for_pids(cluster, first, 2)
    assert all(alive(pid) for pid in pids)

    worker_a.kill()
    worker_a.wait(5)
    assert wait_until(lambda: not any(alive(pid) for pid in pids), 3), "children outlived it"
    _, b = cluster.start_worker()
    retried_and_completed(cluster, task, first, by=b)
    assert wait_until(
        lambda: (w := cluster.worker(a)) is not None and w.status == WorkerStatus.offline, 5
    )


def test_a_worker_killed_before_its_first_heartbeat_is_reaped_the_same_way(
    cluster: Cluster,
) -> None:
    # The reaper gives a silent worker 3 s; this worker would heartbeat after 30 s (its own
    # settings allow that), so it dies with nothing but its registration and its claim.
    cluster.start("scheduler", SCHEDD_SCHEDULER__HEARTBEAT_TIMEOUT="3")
    task = make_task(cluster.db, FIRST_ATTEMPT_HANGS, retry_count=1, retry_delay_seconds=0)
    first = add_run(cluster.db, task)
    slow = {
        "SCHEDD_WORKER__HEARTBEAT_INTERVAL": "30",
        "SCHEDD_WORKER__FENCE_SECONDS": "60",
        "SCHEDD_SCHEDULER__HEARTBEAT_TIMEOUT": "90",
    }
    worker_a, a = cluster.start_worker(**slow)
    claimed_by(cluster.db, first, a)
    pids = wait_for_pids(cluster, first, 2)
    assert get_run(cluster.db, first).heartbeat_at == get_run(cluster.db, first).started_at
    worker_a.kill()
    worker_a.wait(5)
    assert wait_until(lambda: not any(alive(pid) for pid in pids), 3), "children outlived it"
    _, b = cluster.start_worker()
    retried_and_completed(cluster, task, first, by=b)


def test_sigterm_during_a_run_lets_it_finish_and_the_worker_exits_0(cluster: Cluster) -> None:
    worker_a, a = cluster.start_worker(SCHEDD_WORKER__DRAIN_GRACE_SECONDS="10")
    run_id = add_run(cluster.db, make_task(cluster.db, "sleep 3; echo done"))
    claimed_by(cluster.db, run_id, a)
    started = time.monotonic()
    worker_a.send_signal(signal.SIGTERM)
    assert worker_a.wait(15) == 0, cluster.logs()
    assert time.monotonic() - started > 2
    run = get_run(cluster.db, run_id)
    assert (run.status, run.result) == ("completed", "done\n")
    worker = cluster.worker(a)
    assert worker is not None and worker.status == WorkerStatus.offline


def test_a_second_sigterm_hands_the_run_back_at_once_and_exits_0(cluster: Cluster) -> None:
    worker_a, a = cluster.start_worker(
        SCHEDD_WORKER__DRAIN_GRACE_SECONDS="60", SCHEDD_WORKER__KILL_GRACE_SECONDS="60"
    )
    run_id = add_run(cluster.db, make_task(cluster.db, "trap '' TERM; echo $$; sleep 300"))
    claimed_by(cluster.db, run_id, a)
    (pid,) = wait_for_pids(cluster, run_id, 1)
    worker_a.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    worker_a.send_signal(signal.SIGTERM)
    assert worker_a.wait(5) == 0, cluster.logs()
    run = get_run(cluster.db, run_id)
    assert (run.status, run.worker_id) == ("pending", None)
    assert not alive(pid)
    with cluster.db.session() as session:
        assert session.execute(sa.text("SELECT count(*) FROM run_output")).scalar() == 1


def test_an_operator_drain_ends_a_worker_process_with_exit_0(cluster: Cluster) -> None:
    worker_a, a = cluster.start_worker()
    run_id = add_run(cluster.db, make_task(cluster.db, "sleep 1; echo done"))
    claimed_by(cluster.db, run_id, a)
    with cluster.db.session() as session:
        workers.drain_worker(session, a, actor="alice")
    assert worker_a.wait(10) == 0, cluster.logs()
    assert get_run(cluster.db, run_id).status == RunStatus.completed
    worker = cluster.worker(a)
    assert worker is not None and worker.status == WorkerStatus.offline
