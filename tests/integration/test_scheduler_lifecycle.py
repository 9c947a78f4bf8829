"""Trigger, pause and resume (the services the API and `schedctl --db` call)."""

from __future__ import annotations

import pytest
from sqlmodel import select

from schedd.db import Database
from schedd.errors import Conflict, InvalidInput, NotFound
from schedd.models import AuditEntry
from schedd.services import lifecycle
from schedd.services import runs as run_service
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
)


def audit_actions(db: Database) -> list[tuple[str, str, str]]:
    with db.session() as s:
        return [
            (e.actor, e.action, e.target)
            for e in s.exec(select(AuditEntry).order_by(AuditEntry.id))
        ]


def test_trigger_creates_a_pending_manual_run_now(db: Database) -> None:
    task_id = new_task(db, "backup", schedule="0 0 3 * * *", priority="high")
    with db.session() as s:
        created = lifecycle.trigger_task(s, "backup", actor="alice", now=at(5))
    assert (created.status, created.trigger, created.task_id) == ("pending", "manual", task_id)
    assert created.created_at == at(5)
    assert created.scheduled_for is None
    assert created.arguments is None  # the task's own arguments apply
    assert created.priority == 2  # high
    assert ("alice", "task.trigger", f"task:{task_id}") in audit_actions(db)


def test_trigger_with_arguments_overrides_them_for_that_run(db: Database) -> None:
    new_task(db, "backup", schedule=None, arguments=["--full"])
    with db.session() as s:
        created = lifecycle.trigger_task(s, "backup", arguments=["--incremental", "x y"])
    assert created.arguments == ["--incremental", "x y"]


def test_trigger_and_dispatch_publishes_after_the_commit(db: Database) -> None:
    new_task(db, "backup", schedule=None)
    broker = RecordingBroker()
    created = lifecycle.trigger_and_dispatch(db, broker, "backup", actor="ci")
    assert broker.run_ids == [created.id]
    assert run(db, created.id).dispatched_at is not None


@pytest.mark.parametrize("arguments", [["ok", 3], "not a list", ["x"] * 257])
def test_trigger_refuses_bad_arguments(db: Database, arguments: object) -> None:
    new_task(db, "backup", schedule=None)
    with db.session() as s, pytest.raises(InvalidInput, match="arguments"):
        lifecycle.trigger_task(s, "backup", arguments=arguments)  # type: ignore[arg-type]


def test_trigger_of_an_unknown_task_is_not_found(db: Database) -> None:
    with db.session() as s, pytest.raises(NotFound):
        lifecycle.trigger_task(s, "nope")


def test_trigger_is_refused_while_a_forbid_task_has_an_active_run(db: Database) -> None:
    task_id = new_task(db, "backup", schedule=None, concurrency_policy="forbid")
    busy = add_run(db, task_id, status="running", worker_id="w1")
    with db.session() as s, pytest.raises(Conflict, match=f"run {busy} \\(running\\)"):
        lifecycle.trigger_task(s, "backup")
    assert len(runs_of(db, task_id)) == 1


def test_trigger_replaces_the_active_run_of_a_replace_task(db: Database) -> None:
    task_id = new_task(db, "backup", schedule=None, concurrency_policy="replace")
    old = add_run(db, task_id, status="pending")
    with db.session() as s:
        created = lifecycle.trigger_task(s, "backup")
    assert run(db, old).status == "cancelled"
    assert run(db, old).error_message == f"replaced by manual run {created.id}"
    assert run(db, created.id).status == "pending"


def test_a_paused_task_can_be_triggered(db: Database) -> None:
    new_task(db, "backup", schedule="0 * * * * *", status="paused")
    with db.session() as s:
        assert lifecycle.trigger_task(s, "backup").status == "pending"


def test_pause_stops_the_schedule(db: Database) -> None:
    task_id = new_task(db, "tick", schedule="* * * * * *", now=at(-1))
    with db.session() as s:
        paused = lifecycle.pause_task(s, "tick", actor="bob", now=NOW)
    assert (paused.status, paused.next_run_at) == ("paused", None)
    assert task(db, task_id).paused_at == NOW
    scheduler_for(db, RecordingBroker()).run_pass(now=at(30))
    assert runs_of(db, task_id) == []
    assert ("bob", "task.pause", f"task:{task_id}") in audit_actions(db)


def test_pausing_twice_and_resuming_an_active_task_are_harmless(db: Database) -> None:
    new_task(db, "tick", schedule="0 * * * * *", now=at(-30))
    with db.session() as s:
        lifecycle.pause_task(s, "tick", now=NOW)
        again = lifecycle.pause_task(s, "tick", now=at(10))
    assert again.status == "paused"
    with db.session() as s:
        lifecycle.resume_task(s, "tick", now=at(20))
        active = lifecycle.resume_task(s, "tick", now=at(30))
    assert (active.status, active.next_run_at) == ("active", at(60))


def test_resume_starts_from_now_without_a_burst_of_missed_fires(db: Database) -> None:
    task_id = new_task(db, "tick", schedule="0 * * * * *", now=at(-30))
    with db.session() as s:
        lifecycle.pause_task(s, "tick", now=at(-10))
    with db.session() as s:
        resumed = lifecycle.resume_task(s, "tick", now=at(600.5))
    assert resumed.next_run_at == at(660)
    assert task(db, task_id).paused_at is None
    scheduler_for(db, RecordingBroker()).run_pass(now=at(601))
    assert runs_of(db, task_id) == []


def test_resume_of_a_fire_all_task_replays_the_times_missed_while_paused(db: Database) -> None:
    task_id = new_task(db, "tick", schedule="0 * * * * *", now=at(-30), misfire_policy="fire_all")
    with db.session() as s:
        lifecycle.pause_task(s, "tick", now=at(-10))
    with db.session() as s:
        resumed = lifecycle.resume_task(s, "tick", now=at(300.5))
    assert resumed.next_run_at == NOW  # the first fire time after the pause
    scheduler_for(db, RecordingBroker(), max_catchup=4).run_pass(now=at(301))
    # NOW .. NOW+5min were missed; at most max_catchup=4 of them, the latest, run.
    assert [r.scheduled_for for r in runs_of(db, task_id)] == [at(60 * m) for m in range(2, 6)]
    assert task(db, task_id).next_run_at == at(360)


def test_resume_of_a_task_without_schedule_leaves_it_unscheduled(db: Database) -> None:
    new_task(db, "manual", schedule=None)
    with db.session() as s:
        lifecycle.pause_task(s, "manual")
        resumed = lifecycle.resume_task(s, "manual")
    assert (resumed.status, resumed.next_run_at) == ("active", None)


def test_cancelling_a_triggered_run_before_it_starts(db: Database) -> None:
    new_task(db, "backup", schedule=None)
    with db.session() as s:
        created = lifecycle.trigger_task(s, "backup")
    with db.session() as s:
        cancelled = run_service.cancel_run(s, created.id, actor="alice", now=at(1))
    assert (cancelled.status, cancelled.completed_at) == ("cancelled", at(1))
    assert cancelled.error_message == "cancelled by alice"
