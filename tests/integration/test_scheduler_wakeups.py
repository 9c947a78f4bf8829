"""A retry starts at its own ``not_before``, not at the scheduler's next pass.

Real `schedd run` processes with a scheduling interval of 30 s, so only a wake-up can
explain a retry within a second or two: on PostgreSQL the scheduler and the worker are
separate processes (the worker's NOTIFY wakes the scheduler); on SQLite one embedded
process runs both (the worker wakes the scheduler in-process).
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from schedd.db import Database, create_database
from schedd.models import TaskRun
from schedd.scheduler.notify import CHANNEL, runs_need_scheduler
from tests import proc
from tests.scheduler_support import add_run as sched_add_run
from tests.scheduler_support import at, new_task, runs_of
from tests.workerkit import add_run, db_url, make_task, wait_until

SLOW_PASSES = {
    "SCHEDD_MESSAGE_QUEUE__TYPE": "database",
    "SCHEDD_SCHEDULER__SCHEDULING_INTERVAL": "30",
    "LOG_LEVEL": "info",
}


class Daemons:
    """`schedd run` subprocesses on one database, killed at the end."""

    def __init__(self, url: str, home: Path) -> None:
        self.url = url
        self.home = home
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *processes: list[str]) -> None:
        """One process per list of roles, started at once; returns when all run."""
        logs: list[tuple[Path, int]] = []
        for roles in processes:
            log = self.home / f"{'-'.join(roles)}.log"
            args = [arg for role in roles for arg in ("--role", role)]
            with log.open("wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        proc.schedd("run", *args),
                        env=proc.isolated_env(self.home, {"DATABASE_URL": self.url, **SLOW_PASSES}),
                        cwd=self.home,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            logs.append((log, len(roles)))

        def started() -> bool:
            return all(log.read_bytes().count(b" started") >= n for log, n in logs)

        assert wait_until(started, 90), self.logs()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.home.glob("*.log"))

    def close(self) -> None:
        for process in self.procs:
            process.send_signal(signal.SIGKILL)
            process.wait(10)


@pytest.fixture
def daemons(db: Database, tmp_path: Path) -> Iterator[Daemons]:
    group = Daemons(db_url(db), tmp_path)
    if db.is_sqlite:
        group.start(["scheduler", "worker"])
    else:
        group.start(["scheduler"], ["worker"])
    yield group
    group.close()


@pytest.mark.slow
def test_a_one_second_retry_starts_one_second_after_the_failure(
    db: Database, daemons: Daemons
) -> None:
    task_id = make_task(db, "exit 3", retry_count=1, retry_delay_seconds=1)
    add_run(db, task_id)

    def ended() -> list[TaskRun]:
        runs = runs_of(db, task_id)
        return runs if len(runs) == 2 and runs[1].status == "failed" else []

    assert wait_until(lambda: bool(ended()), 20), daemons.logs()
    first, retry = ended()
    assert first.completed_at is not None and retry.not_before is not None
    assert retry.started_at is not None and retry.created_at is not None
    assert retry.parent_run_id == first.id
    # not_before: the failure + 1 s + up to 10 % jitter, and never before the row exists.
    delay = (retry.not_before - first.completed_at).total_seconds()
    assert 1.0 <= delay <= 1.1 + 1e-3, delay
    assert retry.not_before >= retry.created_at
    # Started at its not_before (promotion, hand-over and claim), not 30 s later.
    late = retry.started_at - retry.not_before
    assert timedelta(0) <= late <= timedelta(seconds=0.5), (late, daemons.logs())


def _ended_runs_wake(db: Database, run_ids: list[int]) -> bool:
    with db.session() as session:
        return runs_need_scheduler(session, run_ids)


@pytest.mark.parametrize("status", ["failed", "timeout"])
def test_an_ended_run_wakes_the_scheduler_only_when_it_will_be_retried(
    db: Database, status: str
) -> None:
    retried = new_task(db, "retried", schedule=None, retry_count=1)
    final = new_task(db, "final", schedule=None, retry_count=0)
    first = sched_add_run(db, retried, status=status, completed_at=at(0))
    last_attempt = sched_add_run(db, retried, status=status, retry_count=1, completed_at=at(0))
    no_retries = sched_add_run(db, final, status=status, completed_at=at(0))
    assert _ended_runs_wake(db, [first])
    assert not _ended_runs_wake(db, [last_attempt, no_retries])
    assert not _ended_runs_wake(db, [])


def test_a_completed_run_wakes_the_scheduler_only_when_it_has_dependents(db: Database) -> None:
    upstream = new_task(db, "upstream", schedule=None)
    alone = new_task(db, "alone", schedule=None, retry_count=3)
    new_task(db, "downstream", schedule=None, dependencies=[upstream])
    assert _ended_runs_wake(db, [sched_add_run(db, upstream, status="completed")])
    assert not _ended_runs_wake(db, [sched_add_run(db, alone, status="completed")])
    assert not _ended_runs_wake(db, [sched_add_run(db, alone, status="cancelled")])


@pytest.mark.external_service
def test_the_wake_up_is_a_notify_delivered_at_commit(pg_url: str) -> None:
    db = create_database(pg_url)
    try:
        task_id = new_task(db, schedule=None, retry_count=1)
        run_id = sched_add_run(db, task_id, status="failed", completed_at=at(0))
        url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True) as listener:
            listener.execute(f"LISTEN {CHANNEL}")
            with db.session() as session:
                assert runs_need_scheduler(session, [run_id])
                assert not list(listener.notifies(timeout=0.2))  # not before the commit
            assert [n.channel for n in listener.notifies(timeout=5, stop_after=1)] == [CHANNEL]
    finally:
        db.dispose()
