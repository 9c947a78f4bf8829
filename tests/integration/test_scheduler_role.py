"""The scheduler role as the daemon runs it: a thread, real time, wake-ups, the SQLite lease."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from schedd.daemon import Context
from schedd.db import Database
from schedd.errors import Conflict
from schedd.models import Lease
from schedd.scheduler.lease import SchedulerLease
from schedd.scheduler.notify import notify_tasks_changed
from schedd.scheduler.role import SchedulerRole
from schedd.types import utcnow
from tests.scheduler_support import RecordingBroker, new_task, runs_of, settings


def context(db: Database, **scheduler: float) -> Context:
    url = db.engine.url.render_as_string(hide_password=False)
    return Context(settings=settings(url, **scheduler), db=db, broker=RecordingBroker())


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def started() -> Iterator[list[SchedulerRole]]:
    roles: list[SchedulerRole] = []
    yield roles
    for role in roles:
        role.stop(graceful=True)
        assert role.join(5.0)


def test_the_role_fires_every_second_on_time(db: Database, started: list[SchedulerRole]) -> None:
    task_id = new_task(db, schedule="* * * * * *", now=utcnow())
    role = SchedulerRole(context(db, scheduling_interval=5.0))
    role.start()
    started.append(role)
    assert wait_for(lambda: len(runs_of(db, task_id)) >= 3, timeout=6)
    runs = runs_of(db, task_id)
    times = [r.scheduled_for for r in runs]
    assert times == sorted(set(times))
    assert all(t is not None and t.microsecond == 0 for t in times)
    # It sleeps until next_run_at (polling every 5 s would make runs up to 5 s late).
    lags = [(r.created_at - r.scheduled_for).total_seconds() for r in runs if r.scheduled_for]
    assert max(lags) < 1.0
    assert role.ctx.broker.run_ids == [r.id for r in runs]  # type: ignore[attr-defined]


def test_stop_ends_the_thread_promptly(db: Database) -> None:
    role = SchedulerRole(context(db, scheduling_interval=60.0))
    role.start()
    time.sleep(0.2)
    began = time.monotonic()
    role.stop(graceful=True)
    assert role.join(5.0)
    assert time.monotonic() - began < 2.0


def test_tasks_changed_wakes_a_sleeping_scheduler(
    db: Database, started: list[SchedulerRole]
) -> None:
    ctx = context(db, scheduling_interval=60.0)
    role = SchedulerRole(ctx)
    role.start()
    started.append(role)
    time.sleep(0.3)  # now asleep for up to a minute: there are no tasks
    task_id = new_task(db, schedule="* * * * * *", now=utcnow())
    ctx.tasks_changed.set()
    assert wait_for(lambda: len(runs_of(db, task_id)) >= 1, timeout=3)


@pytest.mark.external_service
def test_a_notify_wakes_a_scheduler_in_another_process(
    pg_url: str, started: list[SchedulerRole]
) -> None:
    from schedd.db import create_database

    db = create_database(pg_url, max_connections=4)
    try:
        role = SchedulerRole(context(db, scheduling_interval=60.0))
        role.start()
        started.append(role)
        time.sleep(1.0)  # the listener is connected and the loop asleep
        task_id = new_task(db, schedule="* * * * * *", now=utcnow())
        with db.session() as s:  # what the API of another process does
            notify_tasks_changed(s)
        assert wait_for(lambda: len(runs_of(db, task_id)) >= 1, timeout=3)
    finally:
        for role in started:
            role.stop(graceful=True)
            role.join(5.0)
        started.clear()
        db.dispose()


def test_a_second_scheduler_on_the_same_sqlite_database_is_refused(
    sqlite_url: str, started: list[SchedulerRole]
) -> None:
    from schedd.db import create_database, migrate

    db = create_database(sqlite_url)
    migrate(db)
    first = SchedulerRole(context(db, scheduling_interval=0.2))
    first.start()
    started.append(first)
    second = SchedulerRole(context(db, scheduling_interval=0.2))
    expected = f"another scheduler is running on this SQLite database \\(pid {os.getpid()} on host"
    with pytest.raises(Conflict, match=expected):
        second.start()
    first.stop(graceful=True)
    assert first.join(5.0)
    started.clear()
    third = SchedulerRole(context(db, scheduling_interval=0.2))
    third.start()  # the lease was released on stop
    started.append(third)


def test_the_lease_of_an_exited_process_on_this_host_is_taken_over(sqlite_url: str) -> None:
    from schedd.db import create_database, migrate

    db = create_database(sqlite_url)
    migrate(db)
    # A pid that cannot exist (above the kernel's pid_max), lease still valid for a while.
    with db.session() as s:
        s.add(
            Lease(
                name="scheduler",
                holder=f"{socket.gethostname()}:99999999:dead",
                expires_at=utcnow() + timedelta(minutes=5),
            )
        )
    lease = SchedulerLease(db, ttl=30)
    lease.acquire()
    assert lease.held


def test_a_lease_held_elsewhere_is_refused_until_it_expires(sqlite_url: str) -> None:
    from schedd.db import create_database, migrate

    db = create_database(sqlite_url)
    migrate(db)
    now = utcnow()
    with db.session() as s:
        s.add(
            Lease(
                name="scheduler", holder="otherhost:4242:x", expires_at=now + timedelta(seconds=30)
            )
        )
    lease = SchedulerLease(db, ttl=30)
    with pytest.raises(Conflict, match="pid 4242 on host otherhost"):
        lease.acquire(now=now)
    lease.acquire(now=now + timedelta(seconds=31))  # expired: taken over
    assert lease.renew(now=now + timedelta(seconds=32))
    with db.engine.connect() as conn:
        holder = conn.execute(sa.select(Lease.holder)).scalar_one()  # type: ignore[call-overload]
    assert holder == lease.holder
