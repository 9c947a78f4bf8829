"""Helpers for the scheduler tests: a recording broker, settings, tasks and runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import select

from schedd.brokers.base import Broker, Delivery, Message
from schedd.config import Settings
from schedd.db import Database
from schedd.errors import Unavailable
from schedd.models import Task, TaskRun
from schedd.scheduler.passes import Scheduler
from schedd.schemas import TaskCreate, validated
from schedd.services import tasks
from schedd.types import utcnow

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """NOW plus ``seconds`` (negative: before NOW)."""
    return NOW + timedelta(seconds=seconds)


class RecordingBroker(Broker):
    """A broker that remembers what was published; ``down`` makes publish fail."""

    name = "recording"

    def __init__(self, *, claims_in_database: bool = False) -> None:
        self.claims_in_database = claims_in_database
        self.published: list[Message] = []
        self.down = False

    @property
    def run_ids(self) -> list[int]:
        return [m.run_id for m in self.published]

    def publish(self, messages: Sequence[Message]) -> None:
        if self.down:
            raise Unavailable("broker is down")
        self.published.extend(messages)

    def consume(self, task_types: Sequence[str], max_count: int, timeout: float) -> list[Delivery]:
        return []

    def ack(self, delivery: Delivery) -> None:
        return None

    def reject(self, delivery: Delivery, *, requeue: bool = True) -> None:
        return None

    def wake(self) -> None:
        return None

    def health(self) -> None:
        return None

    def close(self) -> None:
        return None


def settings(url: str | None = None, **scheduler: Any) -> Settings:
    data: dict[str, Any] = {"scheduler": scheduler}
    if url is not None:
        data["database"] = {"url": url}
    return Settings.model_validate(data)


def scheduler_for(db: Database, broker: Broker | None = None, **cfg: Any) -> Scheduler:
    return Scheduler(db, broker, settings(**cfg), rand=lambda: 0.0)


def new_task(
    db: Database,
    name: str = "job",
    *,
    schedule: str | None = "0 * * * * *",
    now: datetime = NOW,
    **fields: Any,
) -> int:
    """Create a task through the task service; returns its id."""
    data: dict[str, Any] = {"name": name, "executor": "shell", "command": "true"}
    data.update(fields, schedule=schedule)
    with db.session() as s:
        return tasks.create_task(s, validated(TaskCreate, data), now=now).id


def task(db: Database, task_id: int) -> Task:
    with db.session() as s:
        found = s.get(Task, task_id)
        assert found is not None
        return found


def runs_of(db: Database, task_id: int) -> list[TaskRun]:
    with db.session() as s:
        return list(s.exec(select(TaskRun).where(TaskRun.task_id == task_id).order_by(TaskRun.id)))


def run(db: Database, run_id: int) -> TaskRun:
    with db.session() as s:
        found = s.get(TaskRun, run_id)
        assert found is not None
        return found


def add_run(db: Database, task_id: int, **values: Any) -> int:
    """Insert a run directly (as a worker or an earlier fire would have left it)."""
    row: dict[str, Any] = {
        "task_id": task_id,
        "status": "pending",
        "trigger": "manual",
        "task_type": "shell",
        "created_at": NOW,
    }
    if values.get("status") == "running":
        # Alive by default, so that the reaper (which uses the real clock) leaves it be.
        row.update(started_at=utcnow(), heartbeat_at=utcnow(), claim=1)
    row.update(values)
    with db.session() as s:
        created = TaskRun(**row)
        s.add(created)
        s.flush()
        assert created.id is not None
        return created.id


def update_run(db: Database, run_id: int, **values: Any) -> None:
    with db.session() as s:
        s.execute(sa.update(TaskRun).where(TaskRun.id == run_id).values(**values))


def update_task(db: Database, task_id: int, **values: Any) -> None:
    with db.session() as s:
        s.execute(sa.update(Task).where(Task.id == task_id).values(**values))
