"""The run service: list, show, cancel, re-run, and next fire times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schedd.db import Database
from schedd.errors import Conflict, InvalidInput, NotFound
from schedd.services import runs as run_service
from tests.scheduler_support import NOW, add_run, at, new_task, run, runs_of


def test_list_runs_newest_first_with_filters_and_pages(db: Database) -> None:
    a = new_task(db, "a", schedule=None)
    b = new_task(db, "b", schedule=None)
    first = add_run(db, a, status="completed", created_at=at(0))
    add_run(db, b, status="failed", created_at=at(10))
    third = add_run(db, a, status="running", worker_id="w1", created_at=at(20))
    with db.session() as s:
        everything = run_service.list_runs(s, size=2)
        second_page = run_service.list_runs(s, page=2, size=2)
        of_a = run_service.list_runs(s, task="a")
        failed = run_service.list_runs(s, status="failed")
        on_w1 = run_service.list_runs(s, worker="w1")
        recent = run_service.list_runs(s, since=at(5))
        by_task = run_service.task_runs(s, a)
    assert (everything.total, [r.id for r in everything.items]) == (3, [third, third - 1])
    assert [r.id for r in second_page.items] == [first]
    assert [r.id for r in of_a.items] == [third, first]
    assert [r.task_id for r in failed.items] == [b]
    assert [r.id for r in on_w1.items] == [third]
    assert recent.total == 2
    assert by_task.total == 2


def test_list_runs_rejects_an_unknown_status_and_naive_since(db: Database) -> None:
    with db.session() as s:
        with pytest.raises(InvalidInput, match="status: unknown run status 'done'"):
            run_service.list_runs(s, status="done")
        with pytest.raises(InvalidInput, match="since"):
            run_service.list_runs(s, since=datetime(2026, 1, 1))
        with pytest.raises(NotFound):
            run_service.list_runs(s, task="missing")


def test_get_run(db: Database) -> None:
    task_id = new_task(db, schedule=None)
    run_id = add_run(db, task_id, status="completed", exit_code=0)
    with db.session() as s:
        shown = run_service.get_run(s, run_id)
        with pytest.raises(NotFound, match="run 999 not found"):
            run_service.get_run(s, 999)
    assert (shown.id, shown.status, shown.exit_code) == (run_id, "completed", 0)


def test_cancel_a_running_run_asks_its_worker_to_stop(db: Database) -> None:
    task_id = new_task(db, schedule=None)
    running = add_run(db, task_id, status="running", worker_id="w1")
    with db.session() as s:
        shown = run_service.cancel_run(s, running, actor="alice")
    assert (shown.status, shown.cancel_requested) == ("running", True)


def test_cancel_a_waiting_retry(db: Database) -> None:
    task_id = new_task(db, schedule=None)
    waiting = add_run(db, task_id, status="waiting", not_before=at(60))
    with db.session() as s:
        assert run_service.cancel_run(s, waiting).status == "cancelled"


def test_cancel_an_ended_run_is_a_conflict(db: Database) -> None:
    task_id = new_task(db, schedule=None)
    done = add_run(db, task_id, status="completed")
    with db.session() as s, pytest.raises(Conflict, match="already ended \\(completed\\)"):
        run_service.cancel_run(s, done)
    with db.session() as s, pytest.raises(NotFound):
        run_service.cancel_run(s, 999)
    assert run(db, done).status == "completed"


def test_retry_run_runs_an_ended_run_again_by_hand(db: Database) -> None:
    task_id = new_task(db, schedule=None, retry_count=2)
    failed = add_run(
        db,
        task_id,
        status="failed",
        trigger="retry",
        retry_count=2,
        scheduled_for=at(-60),
        arguments=["x"],
        completed_at=at(-1),
    )
    with db.session() as s:
        again = run_service.retry_run(s, failed, actor="alice", now=NOW)
    assert (again.status, again.trigger, again.retry_count) == ("pending", "manual", 0)
    assert (again.scheduled_for, again.arguments) == (at(-60), ["x"])
    assert again.parent_run_id is None  # reserved for the automatic retry
    assert len(runs_of(db, task_id)) == 2


def test_retry_run_of_an_active_run_is_a_conflict(db: Database) -> None:
    task_id = new_task(db, schedule=None)
    pending = add_run(db, task_id, status="pending")
    with db.session() as s, pytest.raises(Conflict, match="still pending"):
        run_service.retry_run(s, pending)


def test_next_fire_times_of_an_active_task_start_at_next_run_at(db: Database) -> None:
    new_task(db, "t", schedule="0 0 9 * * *", timezone="Europe/Berlin", now=NOW)
    with db.session() as s:
        times = run_service.next_fire_times(s, "t", 3, now=NOW)
    assert times == [datetime(2026, 3, d, 8, 0, tzinfo=UTC) for d in (2, 3, 4)]


def test_next_fire_times_of_a_paused_task_start_from_now(db: Database) -> None:
    new_task(db, "t", schedule="0 * * * * *", status="paused")
    with db.session() as s:
        assert run_service.next_fire_times(s, "t", 2, now=at(30)) == [at(60), at(120)]


def test_next_fire_times_without_schedule_and_bad_counts(db: Database) -> None:
    new_task(db, "t", schedule=None)
    with db.session() as s:
        assert run_service.next_fire_times(s, "t", 5) == []
        with pytest.raises(InvalidInput, match="count"):
            run_service.next_fire_times(s, "t", 0)
        with pytest.raises(InvalidInput, match="count"):
            run_service.next_fire_times(s, "t", 101)
