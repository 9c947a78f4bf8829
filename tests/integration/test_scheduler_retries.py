"""Retries: one new run per failed, timed-out or lost run with attempts left, after a backoff."""

from __future__ import annotations

import pytest

from schedd.db import Database
from schedd.scheduler import retries, store
from tests.scheduler_support import (
    RecordingBroker,
    add_run,
    at,
    new_task,
    run,
    runs_of,
    scheduler_for,
    task,
)


@pytest.mark.parametrize("status", ["failed", "timeout", "lost"])
def test_an_ended_run_with_attempts_left_gets_one_waiting_retry(db: Database, status: str) -> None:
    task_id = new_task(db, schedule=None, retry_count=2, retry_delay_seconds=10)
    failed = add_run(
        db,
        task_id,
        status=status,
        trigger="schedule",
        scheduled_for=at(-5),
        completed_at=at(0),
        arguments=["--day", "monday"],
    )
    report = scheduler_for(db, RecordingBroker()).run_pass(now=at(1))
    assert report.retries == 1
    retry = runs_of(db, task_id)[-1]
    assert (retry.trigger, retry.status, retry.retry_count) == ("retry", "waiting", 1)
    assert retry.parent_run_id == failed
    assert retry.scheduled_for == at(-5)
    assert retry.arguments == ["--day", "monday"]
    assert retry.not_before == at(10)  # completed_at + 10 s (no jitter: rand() = 0)


def test_a_run_is_retried_once_however_many_passes_find_it(db: Database) -> None:
    task_id = new_task(db, schedule=None, retry_count=3)
    add_run(db, task_id, status="failed", completed_at=at(0))
    scheduler = scheduler_for(db, RecordingBroker())
    scheduler.run_pass(now=at(1))
    scheduler.run_pass(now=at(2))
    other = scheduler_for(db, RecordingBroker())  # another scheduler process
    other.run_pass(now=at(3))
    assert len(runs_of(db, task_id)) == 2


def test_the_unique_parent_refuses_a_second_retry(db: Database) -> None:
    task_id = new_task(db, schedule=None, retry_count=3)
    failed = add_run(db, task_id, status="failed", completed_at=at(0))
    row = store.run_row(
        task(db, task_id),
        trigger="retry",
        status="waiting",
        now=at(1),
        retry_count=1,
        parent_run_id=failed,
        not_before=at(10),
    )
    with db.session() as s:
        first = store.insert_retry(s, row)
    with db.session() as s:
        second = store.insert_retry(s, row)
    assert first is not None
    assert second is None


def test_no_retry_when_attempts_are_used_up(db: Database) -> None:
    task_id = new_task(db, schedule=None, retry_count=2)
    add_run(db, task_id, status="failed", completed_at=at(0), retry_count=2, trigger="retry")
    scheduler_for(db, RecordingBroker()).run_pass(now=at(1))
    assert len(runs_of(db, task_id)) == 1


@pytest.mark.parametrize("status", ["completed", "cancelled", "skipped"])
def test_completed_cancelled_and_skipped_runs_are_not_retried(db: Database, status: str) -> None:
    task_id = new_task(db, schedule=None, retry_count=2)
    add_run(db, task_id, status=status, completed_at=at(0))
    scheduler_for(db, RecordingBroker()).run_pass(now=at(1))
    assert len(runs_of(db, task_id)) == 1


def test_the_delay_doubles_with_each_attempt_up_to_the_cap(db: Database) -> None:
    task_id = new_task(db, schedule=None, retry_count=10, retry_delay_seconds=10)
    second = add_run(db, task_id, status="failed", completed_at=at(0), retry_count=2)
    fifth = add_run(db, task_id, status="failed", completed_at=at(0), retry_count=5)
    scheduler_for(db, RecordingBroker(), retry_delay_max=100).run_pass(now=at(1))
    by_parent = {r.parent_run_id: r for r in runs_of(db, task_id) if r.trigger == "retry"}
    assert by_parent[second].not_before == at(40)  # 10 * 2^2
    assert by_parent[fifth].not_before == at(100)  # 10 * 2^5 = 320, capped at 100


def test_jitter_adds_at_most_ten_percent(db: Database) -> None:
    task_id = new_task(db, schedule=None, retry_count=1, retry_delay_seconds=100)
    add_run(db, task_id, status="failed", completed_at=at(0))
    with db.session() as s:
        retries.create_retries(
            s, since=at(-60), now=at(1), delay_max=3600, batch=10, rand=lambda: 0.5
        )
    assert runs_of(db, task_id)[-1].not_before == at(105)


def test_a_waiting_retry_becomes_pending_when_its_delay_has_passed(db: Database) -> None:
    task_id = new_task(db, schedule=None, retry_count=1, retry_delay_seconds=10)
    add_run(db, task_id, status="failed", completed_at=at(0))
    broker = RecordingBroker()
    scheduler = scheduler_for(db, broker)
    scheduler.run_pass(now=at(1))
    retry = runs_of(db, task_id)[-1]
    scheduler.run_pass(now=at(9.9))
    assert run(db, retry.id).status == "waiting"
    assert broker.run_ids == []
    report = scheduler.run_pass(now=at(10))
    assert report.promoted == 1
    assert run(db, retry.id).status == "pending"
    assert run(db, retry.id).dispatched_at is not None
    assert broker.run_ids == [retry.id]


def test_a_cancelled_waiting_retry_is_not_promoted(db: Database) -> None:
    task_id = new_task(db, schedule=None)
    waiting = add_run(db, task_id, status="cancelled", not_before=at(0), completed_at=at(0))
    with db.session() as s:
        assert retries.promote_waiting(s, now=at(5), batch=10) == []
    assert run(db, waiting).status == "cancelled"


def test_runs_that_ended_before_the_lookback_are_left_alone(db: Database) -> None:
    task_id = new_task(db, schedule=None, retry_count=1)
    add_run(db, task_id, status="failed", completed_at=at(-100))
    with db.session() as s:
        created, full = retries.create_retries(s, since=at(-50), now=at(0), delay_max=10, batch=10)
    assert (created, full) == ([], False)


def test_a_retry_found_late_is_due_at_once_never_before_it_exists(db: Database) -> None:
    """A scheduler that sees a failure after its delay has passed (it was down, or
    busy) makes the retry due at its creation, not at a time before the row existed."""
    task_id = new_task(db, schedule=None, retry_count=1, retry_delay_seconds=10)
    add_run(db, task_id, status="failed", completed_at=at(0))
    scheduler_for(db, RecordingBroker()).run_pass(now=at(60))
    retry = runs_of(db, task_id)[-1]
    assert retry.trigger == "retry"
    assert retry.created_at == at(60)
    assert retry.not_before == at(60)
