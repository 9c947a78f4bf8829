"""scheduler.max_workers: a registration beyond the cap is refused, counted, and the
worker stops with the reason (real database, a real worker role and `schedd run`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from schedd.brokers.database import DatabaseBroker
from schedd.daemon import Context
from schedd.db import Database
from schedd.models import Worker
from schedd.services import workers
from schedd.worker.role import WorkerRole
from tests.proc import isolated_env, run, schedd
from tests.workerkit import db_url, settings_for


def register(db: Database, worker_id: str, *, max_workers: int | None = 2) -> None:
    with db.session() as session:
        workers.register(
            session,
            worker_id=worker_id,
            hostname="host-1",
            ip_address=None,
            task_types=["shell"],
            executor_types=["shell"],
            max_concurrent_tasks=1,
            pid=1000 + len(worker_id),
            version="test",
            stale_after=60,
            max_workers=max_workers,
        )


def worker_ids(db: Database) -> list[str]:
    with db.session() as session:
        rows = session.execute(sa.select(Worker.id).order_by(Worker.id)).all()  # type: ignore[arg-type]
        return [row[0] for row in rows]


def test_a_registration_beyond_max_workers_is_refused_and_writes_nothing(
    db: Database,
) -> None:
    register(db, "w1")
    register(db, "w2")
    with pytest.raises(workers.WorkerLimitReached) as refused:
        register(db, "w3")
    assert str(refused.value) == (
        "worker 'w3' refused: scheduler.max_workers is 2 and 2 workers are active; "
        "stop or remove one, or raise scheduler.max_workers"
    )
    assert worker_ids(db) == ["w1", "w2"]
    register(db, "w2")  # the same id again takes its own place
    with db.session() as session:
        workers.deregister(session, "w1")  # offline: no longer counted
    register(db, "w3")
    with db.session() as session:  # silent past the heartbeat timeout: not counted
        session.execute(
            sa.update(Worker.__table__)  # type: ignore[attr-defined]
            .where(sa.column("id") == "w2")
            .values(last_heartbeat=datetime(2000, 1, 1, tzinfo=UTC))
        )
    register(db, "w4")
    assert worker_ids(db) == ["w1", "w2", "w3", "w4"]


def refused_count() -> float:
    return REGISTRY.get_sample_value("scheduler_worker_registrations_refused_total") or 0.0


def test_a_refused_worker_role_does_not_start_and_is_counted(db: Database, tmp_path: Path) -> None:
    register(db, "busy")
    settings = settings_for(db_url(db), tmp_path, ID="late")
    settings = settings.model_copy(
        update={"scheduler": settings.scheduler.model_copy(update={"max_workers": 1})}
    )
    broker = DatabaseBroker(settings, db)
    before = refused_count()
    role = WorkerRole(Context(settings=settings, db=db, broker=broker))
    with pytest.raises(workers.WorkerLimitReached, match="scheduler.max_workers is 1"):
        role.start()
    broker.close()
    assert refused_count() == before + 1
    assert worker_ids(db) == ["busy"]


def test_schedd_stops_with_the_reason_when_the_cap_is_reached(tmp_path: Path) -> None:
    from schedd.db import create_database, migrate

    url = f"sqlite:///{tmp_path / 'sched.db'}"
    db = create_database(url)
    migrate(db)
    register(db, "busy")
    db.dispose()
    env = isolated_env(
        tmp_path,
        {
            "DATABASE_URL": url,
            "SCHEDD_SCHEDULER__MAX_WORKERS": "1",
            "SCHEDD_WORKER__ID": "late",
            "SCHEDD_LOG": "warning",
        },
    )
    result = run(schedd("run", "--role", "worker"), env, tmp_path, timeout=30)
    assert result.returncode == 69, result.stderr  # EX_UNAVAILABLE: systemd restarts it
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "schedd: error: worker 'late' refused: scheduler.max_workers is 1 and 1 worker "
        "is active; stop or remove one, or raise scheduler.max_workers"
    )
