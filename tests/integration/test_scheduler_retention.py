"""Retention by the scheduler: old finished runs with their output, old system events
and audit entries go."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from schedd.config import Settings
from schedd.db import Database
from schedd.models import AuditEntry, RunOutput, SystemLog, TaskRun
from schedd.scheduler import passes, retention
from schedd.scheduler.passes import Scheduler
from schedd.scheduler.retention import purge_events, purge_runs
from schedd.types import utcnow
from tests.scheduler_support import add_run, new_task, run

DAY = timedelta(days=1)


def ids(db: Database) -> set[int]:
    with db.session() as s:
        return set(s.execute(sa.select(TaskRun.id)).scalars())


def output_run_ids(db: Database) -> set[int]:
    with db.session() as s:
        return set(s.execute(sa.select(RunOutput.run_id)).scalars())


def add_output(db: Database, run_id: int) -> None:
    with db.session() as s:
        for seq in range(3):
            s.add(RunOutput(run_id=run_id, seq=seq, offset=seq * 4, data="abc\n"))


def finished(db: Database, task_id: int, age_days: float, status: str = "completed") -> int:
    ended = utcnow() - age_days * DAY
    return add_run(
        db, task_id, status=status, created_at=ended - timedelta(minutes=1), completed_at=ended
    )


def test_only_old_finished_runs_go_and_the_newest_of_each_task_stays(db: Database) -> None:
    task = new_task(db, "busy")
    other = new_task(db, "yearly")
    old = [finished(db, task, 40, status) for status in ("completed", "failed", "skipped")]
    lost = add_run(db, task, status="lost", created_at=utcnow() - 50 * DAY)  # no completed_at
    old_pending = add_run(db, task, status="pending", created_at=utcnow() - 40 * DAY)
    old_running = add_run(db, task, status="running", created_at=utcnow() - 40 * DAY)
    # Created long ago but ended recently: its end is what counts.
    ended_recently = add_run(
        db, task, status="completed", created_at=utcnow() - 40 * DAY, completed_at=utcnow()
    )
    recent = finished(db, task, 1)
    only_run_of_other = finished(db, other, 400)
    for run_id in (old[0], recent):
        add_output(db, run_id)

    deleted, more = purge_runs(db, utcnow() - 30 * DAY)

    assert (deleted, more) == (4, False)
    assert ids(db) == {old_pending, old_running, ended_recently, recent, only_run_of_other}
    assert lost not in ids(db)
    assert output_run_ids(db) == {recent}  # the deleted run's output went with it


def test_purges_in_batches_and_stops_at_the_time_budget(db: Database) -> None:
    task = new_task(db)
    for _ in range(5):
        finished(db, task, 40)
    newest = finished(db, task, 40)
    cutoff = utcnow() - 30 * DAY
    assert purge_runs(db, cutoff, batch=2, time_budget=0) == (2, True)
    assert purge_runs(db, cutoff, batch=2) == (3, False)
    assert ids(db) == {newest}


def test_a_kept_retry_loses_only_the_link_to_its_deleted_parent(db: Database) -> None:
    task = new_task(db)
    parent = finished(db, task, 40, "failed")
    retry = add_run(db, task, status="completed", parent_run_id=parent, trigger="retry")
    assert purge_runs(db, utcnow() - 30 * DAY) == (1, False)
    assert run(db, retry).parent_run_id is None


def _scheduler(db: Database, runs_days: float) -> Scheduler:
    settings = Settings.model_validate(
        {"database": {"url": "sqlite://"}, "retention": {"runs_days": runs_days}}
    )
    return Scheduler(db, None, settings, rand=lambda: 0.0)


def test_the_scheduler_pass_applies_retention_after_its_first_delay(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = new_task(db, schedule=None)
    old = finished(db, task, 40)
    newest = finished(db, task, 40)
    # A scheduler just started leaves history alone (tests pin old clocks, too).
    assert _scheduler(db, 30).run_pass().purged == 0
    monkeypatch.setattr(passes, "RETENTION_FIRST_DELAY", 0.0)
    assert _scheduler(db, 0).run_pass().purged == 0  # 0 days keeps everything
    scheduler = _scheduler(db, 30)
    assert scheduler.run_pass().purged == 1
    assert ids(db) == {newest}
    assert old not in ids(db)


def add_events(db: Database, age_days: float, count: int) -> None:
    stamp = utcnow() - age_days * DAY
    with db.session() as s:
        s.execute(
            sa.insert(SystemLog.__table__),  # type: ignore[attr-defined]
            [
                {
                    "time": stamp,
                    "level": "error",
                    "levelno": 40,
                    "component": "x",
                    "message": "m",
                    "refs": {},
                }
            ]
            * count,
        )
        s.execute(
            sa.insert(AuditEntry.__table__),  # type: ignore[attr-defined]
            [
                {
                    "time": stamp,
                    "actor": "a",
                    "action": "a",
                    "target": "t",
                    "outcome": "ok",
                    "detail": {},
                }
            ]
            * count,
        )


def event_ages(db: Database) -> tuple[int, int]:
    with db.session() as s:
        events = s.execute(sa.select(sa.func.count()).select_from(SystemLog)).scalar_one()
        audit = s.execute(sa.select(sa.func.count()).select_from(AuditEntry)).scalar_one()
    return events, audit


def test_old_events_and_audit_entries_go_in_batches(db: Database) -> None:
    add_events(db, 20, 7)
    add_events(db, 1, 2)
    cutoff = utcnow() - 14 * DAY
    events = retention.system_logs
    assert purge_events(db, events, cutoff, batch=3, time_budget=0) == (3, True)
    assert purge_events(db, events, cutoff, batch=3) == (4, False)
    assert event_ages(db) == (2, 9)
    assert purge_events(db, retention.audit_log, cutoff) == (7, False)
    assert event_ages(db) == (2, 2)


def test_the_scheduler_pass_applies_event_and_audit_retention(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_events(db, 20, 3)
    add_events(db, 200, 2)
    add_events(db, 1, 1)
    monkeypatch.setattr(passes, "RETENTION_FIRST_DELAY", 0.0)

    def scheduler(**days: float) -> Scheduler:
        settings = Settings.model_validate({"database": {"url": "sqlite://"}, "retention": days})
        return Scheduler(db, None, settings, rand=lambda: 0.0)

    # 0 days keeps everything.
    assert scheduler(system_logs_days=0, audit_days=0).run_pass().purged_events == 0
    # System events after 14 days, audit entries after 90.
    assert scheduler(system_logs_days=14, audit_days=90).run_pass().purged_events == 5 + 2
    assert event_ages(db) == (1, 4)
