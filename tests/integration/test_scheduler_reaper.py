"""The reaper: silent workers go offline, their runs become lost, judged by the DB clock."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from schedd.db import Database
from schedd.models import Worker
from schedd.scheduler import reaper
from schedd.scheduler.observation import Observation
from tests.scheduler_support import (
    RecordingBroker,
    add_run,
    new_task,
    run,
    runs_of,
    scheduler_for,
)

TIMEOUT = 30.0


def ago(db_now: datetime, seconds: float) -> datetime:
    return db_now - timedelta(seconds=seconds)


def add_worker(
    db: Database, worker_id: str, last_heartbeat: datetime | None, **values: object
) -> None:
    with db.session() as s:
        s.add(
            Worker(
                id=worker_id,
                hostname="host",
                last_heartbeat=last_heartbeat,
                registered_at=values.pop("registered_at", last_heartbeat),  # type: ignore[arg-type]
                **values,  # type: ignore[arg-type]
            )
        )


def worker_status(db: Database, worker_id: str) -> str:
    with db.session() as s:
        found = s.get(Worker, worker_id)
        assert found is not None
        return found.status


def reap(db: Database, **kwargs: float) -> reaper.ReapResult:
    with db.session() as s:
        return reaper.reap(
            s,
            db_now=kwargs.get("now") or db.now(),  # type: ignore[arg-type]
            heartbeat_timeout=TIMEOUT,
            default_timeout=kwargs.get("default_timeout", 3600),
        )


def test_a_silent_worker_goes_offline_and_its_runs_are_lost(db: Database) -> None:
    now = db.now()
    task_id = new_task(db, schedule=None)
    add_worker(db, "dead", ago(now, 31))
    add_worker(db, "alive", ago(now, 5))
    lost = add_run(
        db,
        task_id,
        status="running",
        worker_id="dead",
        started_at=ago(now, 60),
        heartbeat_at=ago(now, 31),
    )
    fine = add_run(
        db,
        task_id,
        status="running",
        worker_id="alive",
        started_at=ago(now, 60),
        heartbeat_at=ago(now, 5),
    )
    result = reap(db)
    assert [w for w, _ in result.offline] == ["dead"]
    assert [r.run_id for r in result.runs] == [lost]
    assert worker_status(db, "dead") == "offline"
    assert worker_status(db, "alive") == "active"
    reaped = run(db, lost)
    assert reaped.status == "lost"
    assert reaped.error_message == "worker dead stopped heartbeating"
    assert reaped.completed_at is not None
    assert run(db, fine).status == "running"


def test_reaping_twice_changes_nothing_the_second_time(db: Database) -> None:
    now = db.now()
    task_id = new_task(db, schedule=None)
    add_worker(db, "dead", ago(now, 100))
    add_run(db, task_id, status="running", worker_id="dead", heartbeat_at=ago(now, 100))
    first = reap(db)
    second = reap(db)
    assert (len(first.offline), len(first.runs)) == (1, 1)
    assert (second.offline, second.runs) == ([], [])


def test_a_worker_that_never_heartbeated_is_judged_by_its_registration(db: Database) -> None:
    now = db.now()
    add_worker(db, "silent", None, registered_at=ago(now, 40))
    add_worker(db, "new", None, registered_at=ago(now, 1))
    reap(db)
    assert worker_status(db, "silent") == "offline"
    assert worker_status(db, "new") == "active"


def test_a_run_whose_worker_never_heartbeated_it_is_reaped(db: Database) -> None:
    now = db.now()
    task_id = new_task(db, schedule=None)
    stale = add_run(
        db, task_id, status="running", worker_id="w", started_at=ago(now, 40), heartbeat_at=None
    )
    reap(db)
    assert run(db, stale).status == "lost"


def test_a_run_far_past_its_timeout_without_a_live_worker_ends(db: Database) -> None:
    now = db.now()
    task_id = new_task(db, schedule=None, timeout_seconds=60)
    add_worker(db, "gone", ago(now, 5), status="offline")
    # Its heartbeat looks fresh, but its worker is offline and it is long overdue.
    overdue = add_run(
        db,
        task_id,
        status="running",
        worker_id="gone",
        started_at=ago(now, 100),
        heartbeat_at=ago(now, 1),
    )
    recent = add_run(
        db,
        task_id,
        status="running",
        worker_id="gone",
        started_at=ago(now, 80),
        heartbeat_at=ago(now, 1),
    )
    result = reap(db)
    assert [(r.run_id, r.status) for r in result.runs] == [(overdue, "timeout")]
    assert (
        run(db, overdue).error_message == "ran past its timeout of 60s and its worker gone is gone"
    )
    assert run(db, recent).status == "running"  # 80 s < 60 s timeout + 30 s heartbeat timeout


def test_a_long_run_on_a_live_worker_is_left_to_its_worker(db: Database) -> None:
    now = db.now()
    task_id = new_task(db, schedule=None, timeout_seconds=60)
    add_worker(db, "busy", ago(now, 1))
    long = add_run(
        db,
        task_id,
        status="running",
        worker_id="busy",
        started_at=ago(now, 500),
        heartbeat_at=ago(now, 1),
    )
    reap(db)
    assert run(db, long).status == "running"


def watched_for(seconds: float) -> Observation:
    """An observation that has seen the database answer for ``seconds``."""
    clock = [0.0]
    observed = Observation(seconds, clock=lambda: clock[0])
    observed.succeeded()
    clock[0] += seconds
    observed.succeeded()
    return observed


def test_a_lost_run_is_retried_on_the_same_pass(db: Database) -> None:
    now = db.now()
    task_id = new_task(db, schedule=None, retry_count=1, retry_delay_seconds=0)
    add_worker(db, "dead", ago(now, 100))
    lost = add_run(db, task_id, status="running", worker_id="dead", heartbeat_at=ago(now, 100))
    broker = RecordingBroker()
    scheduler = scheduler_for(db, broker)
    scheduler.observation = watched_for(90)
    scheduler.run_pass()  # real clock; heartbeat timeout 90 s
    retry = runs_of(db, task_id)[-1]
    assert (retry.parent_run_id, retry.trigger, retry.status) == (lost, "retry", "pending")
    assert broker.run_ids == [retry.id]


def test_after_a_database_outage_the_reaper_waits_a_heartbeat_timeout_before_judging(
    db: Database,
) -> None:
    # The workers' heartbeats are as old as the outage; they need a timeout to write.
    now = db.now()
    add_worker(db, "quiet", ago(now, 100))
    task_id = new_task(db, schedule=None)
    lost = add_run(db, task_id, status="running", worker_id="quiet", heartbeat_at=ago(now, 100))
    clock = [1000.0]
    scheduler = scheduler_for(db, RecordingBroker(), reap_interval=0.05)
    scheduler.observation = Observation(45.0, clock=lambda: clock[0])

    def one_pass(advance: float) -> int:
        clock[0] += advance
        time.sleep(0.06)  # past reap_interval, on the real clock
        return scheduler.run_pass().reaped

    assert one_pass(0) == 0  # just started: nothing observed yet
    assert one_pass(60) == 0  # a 60 s gap: as if the database had been away
    assert sum(one_pass(9) for _ in range(9)) == 0  # 81 s of reachability
    assert run(db, lost).status == "running"
    assert one_pass(9) == 1  # 90 s: a full heartbeat timeout
    scheduler.observation.failed()  # a failed step ends the observation
    assert not scheduler.observation.may_judge(90)
