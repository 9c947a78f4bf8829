"""Worker registration, heartbeats, drain and removal (services.workers)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from schedd.db import Database
from schedd.errors import Conflict, NotFound
from schedd.models import AuditEntry, RunStatus, WorkerStatus
from schedd.schemas import HeartbeatIn, WorkerRead
from schedd.services import claims, workers
from tests.workerkit import add_run, get_run, make_task, set_run


def register(db: Database, worker_id: str = "w1", **overrides: Any) -> WorkerRead:
    values: dict[str, Any] = {
        "worker_id": worker_id,
        "hostname": "host-a",
        "ip_address": "10.0.0.5",
        "task_types": ["shell", "reports"],
        "executor_types": ["shell"],
        "max_concurrent_tasks": 4,
        "pid": 4242,
        "version": "0.1.0",
        "stale_after": 30.0,
    }
    values.update(overrides)
    with db.session() as session:
        return workers.register(session, **values)


def beat(db: Database, worker_id: str = "w1", **kwargs: Any) -> WorkerRead:
    load = HeartbeatIn(current_task_count=2, load_average=0.5, memory_usage=812.5, cpu_usage=37.0)
    with db.session() as session:
        return workers.heartbeat(session, worker_id, load, **kwargs)


def test_register_creates_an_active_worker_with_what_it_offers(db: Database) -> None:
    worker = register(db)
    assert worker.status == WorkerStatus.active
    assert (worker.hostname, worker.ip_address, worker.pid, worker.version) == (
        "host-a",
        "10.0.0.5",
        4242,
        "0.1.0",
    )
    assert worker.task_types == ["shell", "reports"]
    assert worker.executor_types == ["shell"]
    assert worker.max_concurrent_tasks == 4
    assert worker.last_heartbeat is not None and worker.registered_at == worker.last_heartbeat


def test_a_live_worker_id_cannot_be_taken_by_another_process(db: Database) -> None:
    register(db)
    with pytest.raises(Conflict, match="in use by pid 4242 on host-a"):
        register(db, hostname="host-b", pid=99)


def test_a_worker_id_is_taken_over_when_stale_offline_forced_or_the_same_process(
    db: Database,
) -> None:
    register(db)
    assert register(db).pid == 4242  # the same process registering again
    assert register(db, pid=1, force=True).pid == 1
    time.sleep(0.05)
    assert register(db, pid=2, stale_after=0.01).pid == 2
    with db.session() as session:
        workers.deregister(session, "w1")
    assert register(db, hostname="host-b", pid=3).status == WorkerStatus.active


def test_heartbeat_records_load_and_renews_the_workers_running_runs(db: Database) -> None:
    register(db)
    task = make_task(db, "true")
    mine, not_held, pending = add_run(db, task), add_run(db, task), add_run(db, task)
    with db.session() as session:
        claims.claim_next(session, "w1", limit=2, task_types=["shell"], executor_types=["shell"])
    old = get_run(db, mine).heartbeat_at
    time.sleep(0.02)
    worker = beat(db, run_ids=[mine])
    assert (
        worker.current_task_count,
        worker.load_average,
        worker.memory_usage,
        worker.cpu_usage,
    ) == (2, 0.5, 812.5, 37.0)
    assert get_run(db, mine).heartbeat_at > old  # type: ignore[operator]
    assert get_run(db, not_held).heartbeat_at == old  # an orphan of an earlier process
    assert get_run(db, pending).heartbeat_at is None
    beat(db)  # the HTTP API's heartbeat renews every running run of the worker
    assert get_run(db, not_held).heartbeat_at > old  # type: ignore[operator]


def test_heartbeat_revives_an_offline_worker_and_keeps_a_draining_one_draining(
    db: Database,
) -> None:
    register(db)
    with db.session() as session:
        workers.deregister(session, "w1")
    assert beat(db).status == WorkerStatus.active
    with db.session() as session:
        workers.drain_worker(session, "w1")
    assert beat(db).status == WorkerStatus.draining


def test_heartbeat_of_an_unknown_worker_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        beat(db, "nobody")


def test_drain_asks_an_active_worker_to_drain_and_is_audited(db: Database) -> None:
    register(db)
    with db.session() as session:
        assert workers.drain_worker(session, "w1", actor="alice").status == WorkerStatus.draining
        assert workers.drain_worker(session, "w1", actor="alice").status == WorkerStatus.draining
    with db.session() as session:
        entries = session.exec(select(AuditEntry)).all()
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("alice", "worker.drain", "worker:w1")
    ]


def test_an_offline_worker_cannot_be_drained(db: Database) -> None:
    register(db)
    with db.session() as session:
        workers.deregister(session, "w1")
    with db.session() as session, pytest.raises(Conflict, match="offline"):
        workers.drain_worker(session, "w1")


def test_only_an_offline_worker_can_be_removed(db: Database) -> None:
    register(db)
    with db.session() as session, pytest.raises(Conflict, match="drain it first"):
        workers.remove_worker(session, "w1")
    with db.session() as session:
        workers.deregister(session, "w1")
    with db.session() as session:
        workers.remove_worker(session, "w1", actor="alice")
    with db.session() as session, pytest.raises(NotFound):
        workers.get_worker(session, "w1")


def test_list_workers_pages_and_filters_by_status(db: Database) -> None:
    for name in ("a", "b", "c"):
        register(db, name, pid=ord(name))
    with db.session() as session:
        workers.deregister(session, "b")
        page = workers.list_workers(session, page=1, size=2)
        offline = workers.list_workers(session, status="offline")
    assert ([w.id for w in page.items], page.total) == (["a", "b"], 3)
    assert [w.id for w in offline.items] == ["b"]


def test_deregister_leaves_running_runs_to_the_reaper(db: Database) -> None:
    register(db)
    run_id = add_run(db, make_task(db, "true"))
    set_run(db, run_id, status=RunStatus.running.value, worker_id="w1")
    with db.session() as session:
        workers.deregister(session, "w1")
        # Shown as still holding it: the count comes from the runs, not the last report.
        assert workers.get_worker(session, "w1").current_task_count == 1
    assert get_run(db, run_id).status == RunStatus.running


def test_the_run_count_shown_is_the_runs_held_now_not_the_last_report(db: Database) -> None:
    register(db)
    register(db, "w2")
    task = make_task(db, "true")
    for worker_id in ("w1", "w1", "w2"):
        set_run(db, add_run(db, task), status=RunStatus.running.value, worker_id=worker_id)
    set_run(db, add_run(db, task), status=RunStatus.completed.value, worker_id="w2")
    with db.session() as session:
        workers.heartbeat(session, "w1", HeartbeatIn(current_task_count=7))
        listed = {w.id: w.current_task_count for w in workers.list_workers(session).items}
        shown = workers.get_worker(session, "w1").current_task_count
    assert listed == {"w1": 2, "w2": 1}
    assert shown == 2


def test_a_heartbeat_on_postgresql_is_one_statement_that_does_not_wait_for_the_wal(
    pg_url: str,
) -> None:
    """The worker's update and the renewal of its runs are one statement, and its
    transaction commits without waiting for the WAL flush (a lost beat is harmless)."""
    from schedd.db import create_database

    service = workers
    database = create_database(pg_url)
    statements: list[str] = []
    try:
        with database.session() as session:
            service.register(
                session,
                worker_id="w-one",
                hostname="h",
                ip_address="127.0.0.1",
                task_types=["shell"],
                executor_types=["shell"],
                max_concurrent_tasks=2,
                pid=1,
                version="t",
                stale_after=60,
            )
        sa.event.listen(
            database.engine,
            "before_cursor_execute",
            lambda *args: statements.append(args[2]),
        )
        for run_ids in (None, [1, 2], []):
            with database.session() as session:
                service.heartbeat(session, "w-one", HeartbeatIn(), run_ids=run_ids)
                setting = session.execute(sa.text("SHOW synchronous_commit")).scalar()
            assert setting == "off"
        assert [s.split()[0] for s in statements if not s.startswith("SHOW")] == ["WITH"] * 3
    finally:
        database.dispose()
