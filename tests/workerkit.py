"""Helpers for the worker's tests: tasks and runs in a database, settings, processes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

from schedd.brokers.database import DatabaseBroker
from schedd.config import Settings, load_settings
from schedd.daemon import Context
from schedd.db import Database
from schedd.executors.base import RunSpec
from schedd.models import Priority, RunStatus, Task, TaskRun
from schedd.schemas import TaskCreate, validated
from schedd.services import tasks
from schedd.worker.role import WorkerRole
from tests.proc import RUN_AS_SELF

# Short enough for quick tests, with room for a slow heartbeat on a busy CI machine: a
# fence of 2 intervals trips when one heartbeat is 0.2 s late.
FAST_WORKER = {
    "SCHEDD_WORKER__HEARTBEAT_INTERVAL": "0.2",
    "SCHEDD_WORKER__FENCE_SECONDS": "1",
    "SCHEDD_SCHEDULER__HEARTBEAT_TIMEOUT": "1.5",
    "SCHEDD_WORKER__KILL_GRACE_SECONDS": "1",
    "SCHEDD_WORKER__DRAIN_GRACE_SECONDS": "5",
    **RUN_AS_SELF,
}

_names = iter(range(1, 1_000_000))


def make_task(db: Database, command: str, **fields: Any) -> int:
    """A task (through the task service) with a unique name; returns its id."""
    data: dict[str, Any] = {
        "name": f"task-{next(_names)}",
        "executor": "shell",
        "command": command,
    }
    data.update(fields)
    with db.session() as session:
        return tasks.create_task(session, validated(TaskCreate, data)).id


def add_run(
    db: Database,
    task_id: int,
    *,
    status: str = RunStatus.pending.value,
    arguments: list[str] | None = None,
    priority: Priority | None = None,
) -> int:
    """A run of ``task_id`` as the scheduler writes one (pending by default)."""
    with db.session() as session:
        task = session.get(Task, task_id)
        assert task is not None
        run = TaskRun(
            task_id=task_id,
            status=status,
            task_type=task.task_type,
            priority=(priority or Priority(task.priority)).rank,
            arguments=arguments,
        )
        session.add(run)
        session.flush()
        assert run.id is not None
        return run.id


def get_run(db: Database, run_id: int) -> TaskRun:
    with db.session() as session:
        run = session.get(TaskRun, run_id)
        assert run is not None
        return run


def set_run(db: Database, run_id: int, **values: Any) -> None:
    """Change a run behind the worker's back (the reaper, an operator)."""
    runs = TaskRun.__table__  # type: ignore[attr-defined]
    with db.session() as session:
        session.execute(sa.update(runs).where(runs.c.id == run_id).values(**values))


def wait_for_status(db: Database, run_id: int, statuses: set[str] | str, timeout: float) -> TaskRun:
    """The run once its status is one of ``statuses``; AssertionError after ``timeout``."""
    wanted = {statuses} if isinstance(statuses, str) else statuses
    deadline = time.monotonic() + timeout
    while True:
        run = get_run(db, run_id)
        if run.status in wanted:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} is {run.status}, not {wanted}, after {timeout}s")
        time.sleep(0.05)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped is dead)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def settings_for(db_url: str, home: Path, **env: str) -> Settings:
    """Settings as a worker process would load them, with fast worker timings."""
    values = {"DATABASE_URL": db_url, "HOME": str(home), **FAST_WORKER}
    values.update({f"SCHEDD_WORKER__{key.upper()}": value for key, value in env.items()})
    return load_settings(env=values)


def db_url(db: Database) -> str:
    return db.engine.url.render_as_string(hide_password=False)


@contextmanager
def running_worker(db: Database, home: Path, **env: str) -> Iterator[WorkerRole]:
    """A started worker role in this process, stopped (forcibly) afterwards."""
    settings = settings_for(db_url(db), home, **env)
    broker = DatabaseBroker(settings, db)
    role = WorkerRole(Context(settings=settings, db=db, broker=broker))
    role.start()
    try:
        yield role
    finally:
        role.stop(graceful=False)
        assert role.join(30), "the worker did not stop"
        broker.close()


def pids_in(text: str) -> list[int]:
    return [int(word) for word in text.split() if word.isdigit()]


class Sink:
    """An OutputSink that keeps everything (executor tests)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    @property
    def text(self) -> str:
        return self.data.decode(errors="replace")


def spec(command: str, *arguments: str, **fields: Any) -> RunSpec:
    """A RunSpec for executor tests."""
    values: dict[str, Any] = {
        "run_id": 7,
        "task_id": 3,
        "task_name": "nightly-report",
        "executor": "shell",
        "command": command,
        "arguments": list(arguments),
        "timeout": 10.0,
    }
    values.update(fields)
    return RunSpec(**values)
