"""The fire pass on SQLite and PostgreSQL: one run per scheduled time, misfire, overlap."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import REGISTRY

from schedd.db import Database
from schedd.models import RunStatus
from schedd.scheduler import fire
from tests.scheduler_support import (
    NOW,
    RecordingBroker,
    add_run,
    at,
    new_task,
    run,
    runs_of,
    scheduler_for,
    task,
    update_task,
)


def test_a_due_task_fires_one_run_and_advances_next_run_at(db: Database) -> None:
    task_id = new_task(db, schedule="0 * * * * *", now=at(-30))  # next fire: NOW
    broker = RecordingBroker()
    report = scheduler_for(db, broker).run_pass(now=at(0.2))
    [created] = runs_of(db, task_id)
    assert (created.status, created.trigger, created.scheduled_for) == ("pending", "schedule", NOW)
    assert created.task_type == "shell"
    assert created.priority == 1  # normal
    assert created.dispatched_at is not None
    assert broker.run_ids == [created.id]
    assert report.fired == 1
    fired = task(db, task_id)
    assert fired.next_run_at == at(60)
    assert fired.last_run_at == NOW


def test_a_task_that_is_not_due_does_not_fire(db: Database) -> None:
    task_id = new_task(db, schedule="0 * * * * *", now=at(-30))
    scheduler_for(db, RecordingBroker()).run_pass(now=at(-0.5))
    assert runs_of(db, task_id) == []
    assert task(db, task_id).next_run_at == NOW


def test_two_passes_at_the_same_instant_fire_once(db: Database) -> None:
    task_id = new_task(db, schedule="* * * * * *", now=at(-1))
    broker = RecordingBroker()
    scheduler = scheduler_for(db, broker)
    scheduler.run_pass(now=at(0))
    scheduler.run_pass(now=at(0))
    assert [r.scheduled_for for r in runs_of(db, task_id)] == [NOW]
    assert len(broker.published) == 1


def test_a_second_fire_of_the_same_time_inserts_and_publishes_nothing(db: Database) -> None:
    # A scheduler working from a stale next_run_at (as if it raced another one) finds
    # the unique (task_id, scheduled_for) key taken.
    task_id = new_task(db, schedule="* * * * * *", now=at(-1))
    settings = fire.FireSettings()
    with db.session() as s:
        first = fire.fire_due(s, now=at(0), settings=settings)
    update_task(db, task_id, next_run_at=NOW)
    with db.session() as s:
        second = fire.fire_due(s, now=at(0), settings=settings)
    assert len(first.messages) == 1
    assert second.claimed == 1
    assert second.runs == []
    assert second.messages == []
    assert len(runs_of(db, task_id)) == 1


def test_every_scheduled_time_within_grace_gets_its_own_run(db: Database) -> None:
    task_id = new_task(db, schedule="* * * * * *", now=at(-1))  # next fire: NOW
    scheduler_for(db, RecordingBroker(), misfire_grace_seconds=60).run_pass(now=at(5.5))
    assert [r.scheduled_for for r in runs_of(db, task_id)] == [at(s) for s in range(6)]
    assert task(db, task_id).next_run_at == at(6)


def missed(policy: str) -> float:
    value = REGISTRY.get_sample_value("scheduler_missed_fires_total", {"policy": policy})
    return value or 0.0


def test_fire_once_collapses_missed_times_into_one_run(db: Database) -> None:
    task_id = new_task(db, schedule="0 * * * * *", now=at(-30))
    before = missed("fire_once")
    # Down for ten minutes: fires at NOW .. NOW+10min; grace 60 s.
    scheduler_for(db, RecordingBroker(), misfire_grace_seconds=60).run_pass(now=at(600.5))
    runs = runs_of(db, task_id)
    # The missed NOW..NOW+9min collapse into one run for the latest of them, 10min is on time.
    assert [r.scheduled_for for r in runs] == [at(540), at(600)]
    assert all(r.status == "pending" for r in runs)
    assert missed("fire_once") - before == 10
    assert task(db, task_id).next_run_at == at(660)


def test_skip_fires_only_what_is_on_time(db: Database) -> None:
    task_id = new_task(db, schedule="0 * * * * *", now=at(-30), misfire_policy="skip")
    before = missed("skip")
    scheduler_for(db, RecordingBroker(), misfire_grace_seconds=60).run_pass(now=at(600.5))
    assert [r.scheduled_for for r in runs_of(db, task_id)] == [at(600)]
    assert missed("skip") - before == 10


def test_fire_all_fires_every_missed_time_up_to_max_catchup(db: Database) -> None:
    task_id = new_task(db, schedule="0 * * * * *", now=at(-30), misfire_policy="fire_all")
    scheduler_for(db, RecordingBroker(), misfire_grace_seconds=60, max_catchup=5).run_pass(
        now=at(600.5)
    )
    assert [r.scheduled_for for r in runs_of(db, task_id)] == [at(60 * m) for m in range(6, 11)]


def test_forbid_records_an_overlapping_fire_as_skipped(db: Database) -> None:
    task_id = new_task(db, schedule="0 * * * * *", now=at(-30), concurrency_policy="forbid")
    active = add_run(db, task_id, status="running", worker_id="w1")
    broker = RecordingBroker()
    scheduler_for(db, broker).run_pass(now=at(0.1))
    skipped = runs_of(db, task_id)[-1]
    assert (skipped.status, skipped.scheduled_for, skipped.trigger) == ("skipped", NOW, "schedule")
    assert (
        skipped.error_message
        == f"concurrency_policy forbid: run {active} (running) is still active"
    )
    assert skipped.completed_at is not None
    assert broker.published == []
    assert task(db, task_id).next_run_at == at(60)  # the time is used, once


def test_forbid_fires_when_the_previous_run_has_ended(db: Database) -> None:
    task_id = new_task(db, schedule="0 * * * * *", now=at(-30), concurrency_policy="forbid")
    add_run(db, task_id, status="completed")
    scheduler_for(db, RecordingBroker()).run_pass(now=at(0.1))
    assert runs_of(db, task_id)[-1].status == "pending"


def test_replace_cancels_the_active_runs_and_starts_the_new_one(db: Database) -> None:
    task_id = new_task(db, schedule="0 * * * * *", now=at(-30), concurrency_policy="replace")
    running = add_run(db, task_id, status="running", worker_id="w1")
    pending = add_run(db, task_id, status="pending")
    scheduler_for(db, RecordingBroker()).run_pass(now=at(0.1))
    new = runs_of(db, task_id)[-1]
    assert (new.status, new.scheduled_for) == ("pending", NOW)
    assert run(db, running).status == "running"
    assert run(db, running).cancel_requested is True  # its worker stops it
    assert run(db, pending).status == "cancelled"
    assert (
        run(db, pending).error_message == f"replaced by run {new.id} (concurrency_policy replace)"
    )


def test_allow_fires_beside_an_active_run(db: Database) -> None:
    task_id = new_task(db, schedule="0 * * * * *", now=at(-30))
    active = add_run(db, task_id, status="running", worker_id="w1")
    scheduler_for(db, RecordingBroker()).run_pass(now=at(0.1))
    assert [r.status for r in runs_of(db, task_id)] == ["running", "pending"]
    assert run(db, active).cancel_requested is False


def test_paused_tasks_do_not_fire(db: Database) -> None:
    task_id = new_task(db, schedule="* * * * * *", now=at(-1), status="paused")
    scheduler_for(db, RecordingBroker()).run_pass(now=at(10))
    assert runs_of(db, task_id) == []


def test_a_pass_fires_all_due_tasks_batch_by_batch(db: Database) -> None:
    ids = [new_task(db, f"job{i}", schedule="0 * * * * *", now=at(-30)) for i in range(7)]
    report = scheduler_for(db, RecordingBroker(), batch_size=3).run_pass(now=at(0.1))
    assert report.fired == 7
    assert not report.more_due
    assert all(len(runs_of(db, i)) == 1 for i in ids)


def test_a_burst_fired_by_several_threads_fires_each_task_once(db: Database) -> None:
    # On PostgreSQL a full first batch brings in helper threads (FIRE_THREADS).
    ids = [new_task(db, f"burst{i}", schedule="0 * * * * *", now=at(-30)) for i in range(60)]
    broker = RecordingBroker()
    report = scheduler_for(db, broker, batch_size=4).run_pass(now=at(0.1))
    assert report.fired == 60
    assert not report.more_due
    assert [len(runs_of(db, i)) for i in ids] == [1] * 60
    assert sorted(broker.run_ids) == sorted(runs_of(db, i)[0].id for i in ids)


def test_priority_and_task_type_are_copied_into_the_run(db: Database) -> None:
    new_task(db, schedule="0 * * * * *", now=at(-30), priority="critical", task_type="gpu")
    broker = RecordingBroker()
    scheduler_for(db, broker).run_pass(now=at(0.1))
    [message] = broker.published
    assert (message.priority, message.task_type) == (3, "gpu")


def test_a_task_with_a_broken_schedule_stops_being_due(db: Database) -> None:
    task_id = new_task(db, schedule="0 * * * * *", now=at(-30))
    update_task(db, task_id, timezone="Not/AZone")
    report = scheduler_for(db, RecordingBroker()).run_pass(now=at(0.1))
    assert report.errors == 0
    assert runs_of(db, task_id) == []
    assert task(db, task_id).next_run_at is None


def test_fire_lag_is_observed(db: Database) -> None:
    new_task(db, schedule="0 * * * * *", now=at(-30))
    before = REGISTRY.get_sample_value("scheduler_fire_lag_seconds_count") or 0.0
    scheduler_for(db, RecordingBroker()).run_pass(now=NOW + timedelta(milliseconds=5))
    assert REGISTRY.get_sample_value("scheduler_fire_lag_seconds_count") == before + 1


def test_runs_are_created_pending_in_order_of_scheduled_time(db: Database) -> None:
    task_id = new_task(db, schedule="*/10 * * * * *", now=at(-1))
    scheduler_for(db, RecordingBroker()).run_pass(now=at(30))
    runs = runs_of(db, task_id)
    assert [r.scheduled_for for r in runs] == [at(0), at(10), at(20), at(30)]
    assert {r.status for r in runs} == {RunStatus.pending.value}


def test_with_a_broker_that_claims_in_the_database_the_insert_is_the_hand_over(
    db: Database,
) -> None:
    task_id = new_task(db, schedule="0 * * * * *", now=at(-30))
    broker = RecordingBroker(claims_in_database=True)
    scheduler_for(db, broker).run_pass(now=at(0.1))
    [created] = runs_of(db, task_id)
    assert created.dispatched_at == created.created_at == at(0.1)
    assert broker.run_ids == [created.id]  # still published: it wakes the workers
