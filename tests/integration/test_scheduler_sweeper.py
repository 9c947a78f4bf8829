"""The outbox: runs are committed, then published; the sweeper recovers lost hand-overs."""

from __future__ import annotations

from collections.abc import Sequence

from schedd.db import Database
from schedd.scheduler import sweeper
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
)


def sweep(db: Database, seconds: float, *, republish: bool = True) -> list[int]:
    with db.session() as s:
        messages = sweeper.claim_undispatched(
            s, now=at(seconds), redispatch_after=30, batch=100, republish=republish
        )
    return [m.run_id for m in messages]


def test_a_run_committed_but_never_published_is_handed_over(db: Database) -> None:
    # The scheduler committed the run and died before publishing (no broker here).
    task_id = new_task(db, schedule="0 * * * * *", now=at(-30))
    scheduler_for(db, None).run_pass(now=at(0.1))
    [created] = runs_of(db, task_id)
    assert created.dispatched_at is None
    broker = RecordingBroker()
    report = scheduler_for(db, broker).run_pass(now=at(5))
    assert report.swept == 1
    assert broker.run_ids == [created.id]
    assert run(db, created.id).dispatched_at == at(5)


def test_a_run_the_publisher_is_about_to_hand_over_is_left_alone(db: Database) -> None:
    task_id = new_task(db, schedule=None)
    fresh = add_run(db, task_id, created_at=at(-1))
    assert sweep(db, 0) == []
    assert sweep(db, 2.5) == [fresh]


def test_an_unclaimed_run_is_handed_over_again_after_redispatch_after(db: Database) -> None:
    task_id = new_task(db, schedule=None)
    pending = add_run(db, task_id, created_at=at(-100), dispatched_at=at(-10))
    assert sweep(db, 0) == []  # handed over 10 s ago: give the worker time
    assert sweep(db, 21) == [pending]  # 31 s unclaimed
    assert run(db, pending).dispatched_at == at(21)
    assert sweep(db, 22) == []  # stamped: not again at once


def test_only_pending_runs_are_swept(db: Database) -> None:
    task_id = new_task(db, schedule=None)
    for status in ("waiting", "running", "completed", "cancelled"):
        add_run(db, task_id, status=status, created_at=at(-100), worker_id="w")
    assert sweep(db, 0) == []


def test_a_database_broker_only_gets_runs_never_handed_over(db: Database) -> None:
    task_id = new_task(db, schedule=None)
    never = add_run(db, task_id, created_at=at(-100))
    add_run(db, task_id, created_at=at(-100), dispatched_at=at(-90))
    just_created = add_run(db, task_id, created_at=at(0))
    # Its workers see every pending row anyway: nothing to republish; a hint for the
    # runs nobody announced yet (`schedctl --db` has no broker), without waiting.
    assert sweep(db, 0, republish=False) == [never, just_created]


def test_a_broker_outage_leaves_the_run_to_the_sweeper(db: Database) -> None:
    task_id = new_task(db, schedule="0 * * * * *", now=at(-30))
    broker = RecordingBroker()
    broker.down = True
    scheduler = scheduler_for(db, broker)
    scheduler.run_pass(now=at(0.1))
    [created] = runs_of(db, task_id)
    assert (created.status, created.dispatched_at) == ("pending", None)
    broker.down = False
    scheduler.run_pass(now=at(3))
    assert broker.run_ids == [created.id]


def test_dispatch_stamps_only_after_the_broker_accepted(db: Database) -> None:
    task_id = new_task(db, schedule=None)
    pending = add_run(db, task_id)
    broker = RecordingBroker()
    broker.down = True
    message = run_service.message_of(run(db, pending))
    assert run_service.dispatch(db, broker, [message], now=NOW) is False
    assert run(db, pending).dispatched_at is None
    broker.down = False
    assert run_service.dispatch(db, broker, [message], now=NOW) is True
    assert run(db, pending).dispatched_at == NOW
    assert run_service.dispatch(db, None, [message]) is False  # no broker: the sweeper does it


class CountingBroker(RecordingBroker):
    """Says how many messages it holds per task type (``held``)."""

    def __init__(self, held: dict[str, int]) -> None:
        super().__init__()
        self.held = held

    def backlog(self, task_types: Sequence[str]) -> int | None:
        return sum(self.held.get(t, 0) for t in task_types)


def budgeted_sweep(db: Database, broker: CountingBroker, seconds: float) -> list[int]:
    with db.session() as s:
        budget = sweeper.republish_budget(s, broker)
        messages = sweeper.claim_undispatched(
            s, now=at(seconds), redispatch_after=30, batch=100, budget=budget
        )
    return [m.run_id for m in messages]


def test_stale_runs_the_broker_still_holds_are_not_republished(db: Database) -> None:
    # An overloaded queue: ten runs handed over long ago, all still queued.
    task_id = new_task(db, schedule=None)
    for second in range(10):
        add_run(db, task_id, created_at=at(-200), dispatched_at=at(-100 + second))
    assert budgeted_sweep(db, CountingBroker({"shell": 10}), 0) == []


def test_only_as_many_stale_runs_as_the_broker_lost_are_republished(db: Database) -> None:
    task_id = new_task(db, schedule=None)
    stale = [
        add_run(db, task_id, created_at=at(-200), dispatched_at=at(-100 + second))
        for second in range(10)
    ]
    add_run(db, task_id, created_at=at(-200), dispatched_at=at(-1))  # recent: queued
    broker = CountingBroker({"shell": 8})  # 11 handed over, 8 held: 3 lost
    assert budgeted_sweep(db, broker, 0) == stale[:3]  # the oldest hand-overs first
    # Republished (and stamped): the broker holds them again, nothing more to do.
    broker.held["shell"] = 11
    assert budgeted_sweep(db, broker, 1) == []


def test_budgets_are_per_task_type(db: Database) -> None:
    shell = new_task(db, "a", schedule=None)
    other = new_task(db, "b", schedule=None, task_type="reports")
    add_run(db, shell, created_at=at(-200), dispatched_at=at(-100))
    lost = add_run(db, other, created_at=at(-200), dispatched_at=at(-100), task_type="reports")
    # Copies of the shell run do not stand in for the lost reports run.
    broker = CountingBroker({"shell": 5, "reports": 0})
    assert budgeted_sweep(db, broker, 0) == [lost]


def test_runs_never_handed_over_are_published_whatever_the_budget(db: Database) -> None:
    task_id = new_task(db, schedule=None)
    never = add_run(db, task_id, created_at=at(-100))
    add_run(db, task_id, created_at=at(-200), dispatched_at=at(-100))
    assert budgeted_sweep(db, CountingBroker({"shell": 1}), 0) == [never]


def test_a_broker_that_cannot_count_keeps_the_age_rule(db: Database) -> None:
    task_id = new_task(db, schedule=None)
    pending = add_run(db, task_id, created_at=at(-100), dispatched_at=at(-90))
    with db.session() as s:
        assert sweeper.republish_budget(s, RecordingBroker()) is None
    assert sweep(db, 0) == [pending]
