"""A 10 s database outage under load, on PostgreSQL with real processes.

Ten runs of a 3 s task (no retries: a run reaped as lost is lost for good) on two
workers; the test's database refuses connections and its backends are terminated for
10 s, longer than the workers' fence and the heartbeat timeout. Runs that ended before
their worker's fence must be recorded when the database returns (the reaper must give
the workers a heartbeat timeout to write first); runs cut off by the fence run again.
Each run writes a ledger: every job must end exactly once, and no run may be ``lost``.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from schedd.models import RunStatus
from tests.faultkit import Cluster, database_outage
from tests.workerkit import add_run, make_task, wait_until

pytestmark = [pytest.mark.external_service, pytest.mark.slow]

OUTAGE = {
    "SCHEDD_WORKER__HEARTBEAT_INTERVAL": "0.5",
    "SCHEDD_WORKER__FENCE_SECONDS": "2.5",
    "SCHEDD_SCHEDULER__HEARTBEAT_TIMEOUT": "4",
    "SCHEDD_WORKER__MAX_CONCURRENT_TASKS": "4",
}
JOB = 'echo "start $2 $SCHED_RUN_ID" >> "$1"; sleep 3; echo "end $2 $SCHED_RUN_ID" >> "$1"'


def test_a_database_outage_loses_nothing_and_runs_no_finished_run_again(
    cluster: Cluster, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    cluster.start("scheduler", **OUTAGE)
    cluster.start_worker(**OUTAGE)
    cluster.start_worker(**OUTAGE)
    task = make_task(cluster.db, JOB, retry_count=0)
    for job in range(10):
        add_run(cluster.db, task, arguments=[str(ledger), str(job)])
    assert wait_until(lambda: ledger.exists() and ledger.read_text().count("start") >= 8, 15)
    time.sleep(1.0)  # the first runs end 2 s into the outage, before their fence
    with database_outage(cluster.url):
        cluster.db.dispose()
        time.sleep(10)

    def settled() -> bool:
        runs = cluster.runs_of(task)
        return all(run.status not in ("pending", "running") for run in runs)

    assert wait_until(settled, 40), cluster.logs()
    entries = [line.split() for line in ledger.read_text().splitlines()]
    ends = Counter(job for kind, job, _ in entries if kind == "end")
    starts = Counter(job for kind, job, _ in entries if kind == "start")
    lost = [str(job) for job in range(10) if ends[str(job)] == 0]
    twice = [job for job, count in ends.items() if count > 1]
    statuses = Counter(run.status for run in cluster.runs_of(task))
    assert (lost, twice) == ([], []), (starts, ends, statuses, cluster.logs())
    assert statuses == {RunStatus.completed: 10}, (statuses, cluster.logs())
    # Some runs ended during the outage and were recorded afterwards, not run again.
    assert sum(starts.values()) < 20
