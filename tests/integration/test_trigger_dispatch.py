"""Manual triggers under concurrency: the task row lock only where the overlap policy
needs it (PostgreSQL), and hand-overs of concurrent callers shared in batches."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from schedd.brokers.base import Message
from schedd.db import Database, create_database
from schedd.services import lifecycle
from schedd.services.dispatch import dispatcher_for
from schedd.services.runs import message_of
from tests.scheduler_support import RecordingBroker, at, new_task, run
from tests.workerkit import wait_until


@contextmanager
def another_trigger_in_flight(db: Database, name: str) -> Iterator[None]:
    """Another trigger of the task has not committed yet meanwhile."""
    with db.session() as other:
        lifecycle.trigger_task(other, name)
        yield


def trigger_with_lock_timeout(db: Database, name: str) -> int:
    with db.session() as session:
        session.execute(sa.text("SET LOCAL lock_timeout = '300ms'"))
        run_id = lifecycle.trigger_task(session, name).id
    assert run_id is not None
    return run_id


@pytest.mark.external_service
def test_a_trigger_under_allow_does_not_wait_for_the_task_row(pg_url: str) -> None:
    db = create_database(pg_url)
    try:
        new_task(db, "busy", schedule=None)  # concurrency_policy allow
        with another_trigger_in_flight(db, "busy"):
            run_id = trigger_with_lock_timeout(db, "busy")
        assert run(db, run_id).status == "pending"
    finally:
        db.dispose()


@pytest.mark.external_service
@pytest.mark.parametrize("policy", ["forbid", "replace"])
def test_a_trigger_under_forbid_or_replace_takes_the_task_row_lock(
    pg_url: str, policy: str
) -> None:
    db = create_database(pg_url)
    try:
        new_task(db, "guarded", schedule=None, concurrency_policy=policy)
        with (
            another_trigger_in_flight(db, "guarded"),
            pytest.raises(OperationalError, match="lock timeout"),
        ):
            trigger_with_lock_timeout(db, "guarded")
    finally:
        db.dispose()


class GatedBroker(RecordingBroker):
    """Its first publish waits for ``gate``, so that other callers queue up meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[list[int]] = []

    def publish(self, messages: Sequence[Message]) -> None:
        self.calls.append([m.run_id for m in messages])
        if len(self.calls) == 1:
            self.entered.set()
            assert self.gate.wait(10)
        super().publish(messages)


def test_concurrent_hand_overs_share_one_publish_and_one_stamp(db: Database) -> None:
    new_task(db, "many", schedule=None)
    with db.session() as session:
        made = [lifecycle.trigger_task(session, "many") for _ in range(9)]
    broker = GatedBroker()
    dispatcher = dispatcher_for(db, broker)
    results: list[bool] = []

    def hand_over(index: int) -> None:
        results.append(dispatcher.dispatch([message_of(made[index])], at(index)))

    first = threading.Thread(target=hand_over, args=(0,))
    first.start()
    assert broker.entered.wait(10)
    others = [threading.Thread(target=hand_over, args=(i,)) for i in range(1, 9)]
    for thread in others:
        thread.start()
    # The eight callers that came while the first publish was in flight are one batch.
    assert wait_until(lambda: len(dispatcher._queue) == 8, 10)
    broker.gate.set()
    for thread in [first, *others]:
        thread.join(10)
    assert results == [True] * 9
    assert broker.calls[0] == [made[0].id]
    assert sorted(broker.calls[1]) == sorted(r.id for r in made[1:])
    assert len(broker.calls) == 2
    for index, created in enumerate(made):
        assert run(db, created.id).dispatched_at == at(index)


def test_an_unavailable_broker_fails_every_caller_of_the_batch(db: Database) -> None:
    new_task(db, "down", schedule=None)
    with db.session() as session:
        created = lifecycle.trigger_task(session, "down")
    broker = RecordingBroker()
    broker.down = True
    assert dispatcher_for(db, broker).dispatch([message_of(created)], at(1)) is False
    assert run(db, created.id).dispatched_at is None


def test_a_run_the_caller_hands_over_is_stamped_in_its_own_insert(db: Database) -> None:
    new_task(db, "api", schedule=None)
    with db.session() as session:
        created = lifecycle.trigger_task(session, "api", now=at(3), handing_over=True)
    assert run(db, created.id).dispatched_at == at(3)  # committed with the run
    broker = RecordingBroker()
    assert dispatcher_for(db, broker).dispatch([message_of(created)], at(4), stamped=True)
    assert broker.run_ids == [created.id]
    assert run(db, created.id).dispatched_at == at(3)  # no second write


def test_a_failed_hand_over_clears_the_stamp_for_the_sweeper(db: Database) -> None:
    new_task(db, "api", schedule=None)
    with db.session() as session:
        created = lifecycle.trigger_task(session, "api", now=at(3), handing_over=True)
    broker = RecordingBroker()
    broker.down = True
    assert not dispatcher_for(db, broker).dispatch([message_of(created)], at(3), stamped=True)
    assert run(db, created.id).dispatched_at is None  # "never handed over": 2 s grace
