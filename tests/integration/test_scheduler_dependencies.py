"""Dependencies: join release of unscheduled tasks, gating of scheduled ones."""

from __future__ import annotations

from schedd.db import Database
from schedd.models import RunStatus
from schedd.scheduler import dependencies, store
from tests.scheduler_support import (
    NOW,
    RecordingBroker,
    add_run,
    at,
    new_task,
    runs_of,
    scheduler_for,
    task,
)


def completed(db: Database, task_id: int, seconds: float) -> int:
    return add_run(
        db, task_id, status="completed", completed_at=at(seconds), created_at=at(seconds)
    )


def test_a_dependent_runs_once_all_upstreams_completed(db: Database) -> None:
    a = new_task(db, "a", schedule=None)
    b = new_task(db, "b", schedule=None)
    joined = new_task(db, "joined", schedule=None, dependencies=[a, b])
    broker = RecordingBroker()
    scheduler = scheduler_for(db, broker)
    completed(db, a, 10)
    scheduler.run_pass(now=at(11))
    assert runs_of(db, joined) == []  # b has not completed yet
    completed(db, b, 20)
    scheduler.run_pass(now=at(21))
    [released] = runs_of(db, joined)
    assert (released.trigger, released.status, released.scheduled_for) == (
        "dependency",
        "pending",
        at(20),
    )
    assert broker.run_ids == [released.id]
    assert task(db, joined).last_run_at == at(20)


def test_a_release_consumes_the_completions_join_semantics(db: Database) -> None:
    a = new_task(db, "a", schedule=None)
    b = new_task(db, "b", schedule=None)
    joined = new_task(db, "joined", schedule=None, dependencies=[a, b])
    scheduler = scheduler_for(db, RecordingBroker())
    completed(db, a, 10)
    completed(db, b, 20)
    scheduler.run_pass(now=at(21))
    scheduler.run_pass(now=at(22))
    assert len(runs_of(db, joined)) == 1  # no second release for the same completions
    completed(db, a, 30)
    scheduler.run_pass(now=at(31))
    assert len(runs_of(db, joined)) == 1  # a again, but b has not completed since
    completed(db, b, 40)
    scheduler.run_pass(now=at(41))
    assert [r.scheduled_for for r in runs_of(db, joined)] == [at(20), at(40)]


def test_completions_before_the_dependent_existed_do_not_release_it(db: Database) -> None:
    a = new_task(db, "a", schedule=None)
    completed(db, a, -10)
    joined = new_task(db, "joined", schedule=None, dependencies=[a])  # created at NOW
    scheduler_for(db, RecordingBroker()).run_pass(now=at(1))
    assert runs_of(db, joined) == []


def test_failed_upstream_runs_do_not_count(db: Database) -> None:
    a = new_task(db, "a", schedule=None)
    joined = new_task(db, "joined", schedule=None, dependencies=[a])
    add_run(db, a, status="failed", completed_at=at(10))
    scheduler_for(db, RecordingBroker()).run_pass(now=at(11))
    assert runs_of(db, joined) == []


def test_a_paused_dependent_is_not_released(db: Database) -> None:
    a = new_task(db, "a", schedule=None)
    joined = new_task(db, "joined", schedule=None, dependencies=[a], status="paused")
    completed(db, a, 10)
    scheduler_for(db, RecordingBroker()).run_pass(now=at(11))
    assert runs_of(db, joined) == []


def test_forbid_records_a_release_during_an_active_run_as_skipped(db: Database) -> None:
    a = new_task(db, "a", schedule=None)
    joined = new_task(db, "joined", schedule=None, dependencies=[a], concurrency_policy="forbid")
    busy = add_run(db, joined, status="running", worker_id="w1")
    completed(db, a, 10)
    scheduler_for(db, RecordingBroker()).run_pass(now=at(11))
    skipped = runs_of(db, joined)[-1]
    assert (skipped.status, skipped.trigger) == ("skipped", "dependency")
    assert (
        skipped.error_message == f"concurrency_policy forbid: run {busy} (running) is still active"
    )


def test_the_same_release_is_inserted_once(db: Database) -> None:
    a = new_task(db, "a", schedule=None)
    joined = new_task(db, "joined", schedule=None, dependencies=[a])
    completed(db, a, 10)
    with db.session() as s:
        [release] = dependencies.ready_dependents(s)
    row = store.run_row(
        release.task,
        trigger="dependency",
        status="pending",
        now=at(11),
        scheduled_for=release.scheduled_for,
    )
    with db.session() as s:
        first = store.insert_fires(s, [row])
    with db.session() as s:  # a second scheduler with the same (stale) view
        second = store.insert_fires(s, [row])
    assert len(first) == 1
    assert second == []
    assert len(runs_of(db, joined)) == 1


def test_a_scheduled_task_fires_when_its_upstreams_latest_run_completed(db: Database) -> None:
    a = new_task(db, "a", schedule=None)
    gated = new_task(db, "gated", schedule="0 * * * * *", now=at(-30), dependencies=[a])
    add_run(db, a, status="failed", completed_at=at(-50))
    completed(db, a, -40)
    scheduler_for(db, RecordingBroker()).run_pass(now=at(0.1))
    [fired] = runs_of(db, gated)
    assert (fired.status, fired.trigger) == ("pending", "schedule")


def test_a_scheduled_task_is_skipped_when_an_upstream_failed(db: Database) -> None:
    a = new_task(db, "extract", schedule=None)
    b = new_task(db, "load", schedule=None)
    gated = new_task(db, "gated", schedule="0 * * * * *", now=at(-30), dependencies=[a, b])
    completed(db, a, -50)
    failed = add_run(db, b, status="failed", completed_at=at(-40))
    broker = RecordingBroker()
    scheduler_for(db, broker).run_pass(now=at(0.1))
    [skipped] = runs_of(db, gated)
    assert (skipped.status, skipped.scheduled_for) == (RunStatus.skipped.value, NOW)
    assert skipped.error_message == (
        f"upstream task 'load' (id {b}): its latest run {failed} is failed, not completed"
    )
    assert broker.published == []
    assert task(db, gated).next_run_at == at(60)


def test_a_scheduled_task_is_skipped_until_its_upstream_ran(db: Database) -> None:
    a = new_task(db, "extract", schedule=None)
    gated = new_task(db, "gated", schedule="0 * * * * *", now=at(-30), dependencies=[a])
    scheduler_for(db, RecordingBroker()).run_pass(now=at(0.1))
    [skipped] = runs_of(db, gated)
    assert skipped.error_message == f"upstream task 'extract' (id {a}) has not run yet"


def test_an_upstream_still_running_blocks_the_gate(db: Database) -> None:
    a = new_task(db, "extract", schedule=None)
    gated = new_task(db, "gated", schedule="0 * * * * *", now=at(-30), dependencies=[a])
    completed(db, a, -50)
    running = add_run(db, a, status="running", worker_id="w1")
    scheduler_for(db, RecordingBroker()).run_pass(now=at(0.1))
    [skipped] = runs_of(db, gated)
    assert skipped.status == "skipped"
    assert f"its latest run {running} is running" in (skipped.error_message or "")


def test_skipped_upstream_runs_are_not_its_latest_run(db: Database) -> None:
    a = new_task(db, "extract", schedule=None)
    gated = new_task(db, "gated", schedule="0 * * * * *", now=at(-30), dependencies=[a])
    completed(db, a, -50)
    add_run(db, a, status="skipped", completed_at=at(-45))
    scheduler_for(db, RecordingBroker()).run_pass(now=NOW)
    assert [r.status for r in runs_of(db, gated)] == ["pending"]
