"""A frozen worker (SIGSTOP past its fence and the heartbeat timeout, then SIGCONT).

The database fences it (its runs are reaped as lost and retried elsewhere); its guard
process, which does not need it to run, must have killed the run's processes by then,
so nothing of the first attempt runs beside the retry. Each attempt writes a ledger:
``start``, a ``tick`` every 0.2 s, ``end``, each with the attempt and a timestamp.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from schedd.models import RunStatus, WorkerStatus
from tests.faultkit import Cluster
from tests.workerkit import add_run, alive, make_task, wait_for_status, wait_until

pytestmark = [pytest.mark.external_service, pytest.mark.slow]

# The first attempt ticks for 10 s (with a grandchild that would outlive a plain kill of
# the shell); a retry ticks for 2 s.
LEDGER_TASK = (
    'L="$1"; a=$SCHED_ATTEMPT; n=50; [ "$a" = 0 ] || n=10; '
    'echo "start $a $SCHED_WORKER_ID $(date +%s.%N)" >> "$L"; '
    'sleep 300 & echo "child $a $!" >> "$L"; '
    'i=0; while [ $i -lt $n ]; do echo "tick $a $(date +%s.%N)" >> "$L"; '
    "sleep 0.2; i=$((i+1)); done; "
    'echo "end $a $(date +%s.%N)" >> "$L"'
)


def ledger(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def test_a_frozen_workers_runs_are_killed_by_its_guard_before_the_retry_starts(
    cluster: Cluster, tmp_path: Path
) -> None:
    path = tmp_path / "ledger"
    cluster.start("scheduler")
    worker_a, a = cluster.start_worker()
    task = make_task(
        cluster.db, LEDGER_TASK, arguments=[str(path)], retry_count=1, retry_delay_seconds=0
    )
    first = add_run(cluster.db, task)
    wait_for_status(cluster.db, first, "running", 10)
    assert wait_until(lambda: any(e[0] == "tick" for e in ledger(path)), 5), cluster.logs()
    child = next(int(e[2]) for e in ledger(path) if e[0] == "child")

    worker_a.send_signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    _, b = cluster.start_worker()
    wait_for_status(cluster.db, first, "lost", 10)
    assert wait_until(lambda: len(cluster.runs_of(task)) == 2, 10), cluster.logs()
    retry = cluster.runs_of(task)[1].id or 0
    wait_for_status(cluster.db, retry, "completed", 15)
    # The guard killed the whole group while the worker was still frozen.
    assert not alive(child), "a grandchild of the frozen worker's run survived"
    assert time.monotonic() - frozen_at > 2

    worker_a.send_signal(signal.SIGCONT)
    assert wait_until(
        lambda: (w := cluster.worker(a)) is not None and w.status == WorkerStatus.active, 5
    ), cluster.logs()
    time.sleep(1.5)  # the woken worker has had time to report what it saw

    entries = ledger(path)
    starts = {e[1]: (e[2], float(e[3])) for e in entries if e[0] == "start"}
    assert starts["0"][0] == a and starts["1"][0] == b  # SCHED_WORKER_ID
    last_tick_0 = max(float(e[2]) for e in entries if e[:2] == ["tick", "0"])
    assert last_tick_0 < starts["1"][1], "the first attempt ran beside its retry"
    assert [e[1] for e in entries if e[0] == "end"] == ["1"]
    runs = cluster.runs_of(task)
    assert [run.status for run in runs] == [RunStatus.lost, RunStatus.completed]
    # The woken worker did not report the killed attempt as failed by a signal.
    assert runs[0].exit_code is None and runs[0].error_message is not None
    assert "stopped heartbeating" in runs[0].error_message
    assert worker_a.poll() is None
    assert "killing 1 run group(s)" in cluster.logs()
