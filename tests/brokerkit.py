"""End-to-end helpers for the brokers: real workers, a sweeper, runs that log themselves.

A run of the task made by :func:`counting_task` appends its run id to a file, so a test
can tell how many times each run executed, not only that it ended completed.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import sqlalchemy as sa

from schedd.brokers.base import Broker, Message
from schedd.brokers.database import DatabaseBroker
from schedd.brokers.rabbitmq import RabbitMQBroker
from schedd.brokers.redis import RedisBroker
from schedd.config import Settings, load_settings
from schedd.daemon import Context
from schedd.db import Database
from schedd.errors import Unavailable
from schedd.models import RunStatus, Task, TaskRun
from schedd.scheduler import sweeper
from schedd.services.runs import dispatch
from schedd.types import utcnow
from schedd.worker.role import WorkerRole
from tests.proc import RUN_AS_SELF

runs_table = TaskRun.__table__  # type: ignore[attr-defined]


def broker_settings(kind: str, url: str, db_url: str, home: Path, **worker: str) -> Settings:
    env = {
        "DATABASE_URL": db_url,
        "HOME": str(home),
        "SCHEDD_WORKER__HEARTBEAT_INTERVAL": "0.5",
        # Workers here are threads of the test process (GIL shared by 16+ run threads
        # each) on a loaded CI machine: the fence gets room beyond one missed beat.
        "SCHEDD_WORKER__FENCE_SECONDS": "3",
        "SCHEDD_SCHEDULER__HEARTBEAT_TIMEOUT": "4",
        "SCHEDD_WORKER__MAX_CONCURRENT_TASKS": "16",
        **RUN_AS_SELF,
        **{f"SCHEDD_WORKER__{key.upper()}": value for key, value in worker.items()},
    }
    if kind != "database":
        env["SCHEDD_MESSAGE_QUEUE__TYPE"] = kind
        env["SCHEDD_MESSAGE_QUEUE__URL"] = url
    return load_settings(env=env)


def make_broker(kind: str, settings: Settings, db: Database, namespace: str) -> Broker:
    if kind == "rabbitmq":
        return RabbitMQBroker(settings, namespace=namespace, publish_deadline=2.0)
    if kind == "redis":
        return RedisBroker(settings, namespace=namespace, claim_idle=2.0)
    return DatabaseBroker(settings, db)


def counting_task(db: Database, log_file: Path) -> int:
    with db.session() as session:
        task = Task(
            name=f"count-{uuid.uuid4().hex[:8]}",
            task_type="shell",
            executor="shell",
            command=f'echo "$SCHED_RUN_ID" >> {log_file}',
        )
        session.add(task)
        session.flush()
        assert task.id is not None
        return task.id


def trigger(
    db: Database, broker: Broker, task_id: int, count: int, task_type: str = "shell"
) -> list[int]:
    """Commit ``count`` pending runs, then publish them as the scheduler does."""
    ids: list[int] = []
    for start in range(0, count, 200):
        with db.session() as session:
            rows = [
                TaskRun(task_id=task_id, status=RunStatus.pending.value, task_type=task_type)
                for _ in range(min(200, count - start))
            ]
            session.add_all(rows)
            session.flush()
            batch = [int(r.id) for r in rows if r.id is not None]
        ids.extend(batch)
        dispatch(db, broker, [Message(run_id, 1, task_type) for run_id in batch])
    return ids


def statuses(db: Database, ids: list[int]) -> Counter[str]:
    with db.session() as session:
        rows = session.execute(
            sa.select(runs_table.c.status, sa.func.count())
            .where(runs_table.c.id.in_(ids))
            .group_by(runs_table.c.status)
        ).all()
    return Counter({status: int(n) for status, n in rows})


def wait_all_completed(db: Database, ids: list[int], timeout: float) -> Counter[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = statuses(db, ids)
        if found["completed"] == len(ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def executions(log_file: Path) -> Counter[int]:
    if not log_file.exists():
        return Counter()
    return Counter(int(line) for line in log_file.read_text().split())


@contextmanager
def sweeping(db: Database, broker: Broker, redispatch_after: float) -> Iterator[None]:
    """The outbox sweeper's job, every 0.3 s, in a thread (as the scheduler runs it)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(0.3):
            try:
                with db.session() as session:
                    messages = sweeper.claim_undispatched(
                        session, now=utcnow(), redispatch_after=redispatch_after, batch=500
                    )
                broker.publish(messages)
            except (Unavailable, sa.exc.SQLAlchemyError):
                continue  # the runs are found again after redispatch_after

    thread = threading.Thread(target=loop, name="test-sweeper", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


@contextmanager
def workers(
    kind: str, url: str, db: Database, home: Path, namespace: str, count: int, **worker: str
) -> Iterator[list[WorkerRole]]:
    """``count`` worker roles in this process, each with its own broker connection;
    ``worker`` adds [worker] settings."""
    with ExitStack() as stack:
        roles: list[WorkerRole] = []
        for index in range(count):
            settings = broker_settings(
                kind, url, _url(db), home, id=f"w{index}-{namespace}", **worker
            )
            broker = make_broker(kind, settings, db, namespace)
            stack.callback(broker.close)
            role = WorkerRole(Context(settings=settings, db=db, broker=broker))
            role.start()
            stack.callback(_stop, role)
            roles.append(role)
        yield roles


def _stop(role: WorkerRole) -> None:
    role.stop(graceful=False)
    assert role.join(30), "a worker did not stop"


def _url(db: Database) -> str:
    return db.engine.url.render_as_string(hide_password=False)


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_for_command(args: list[str], timeout: float) -> bool:
    """Run ``args`` until it exits 0 or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(args, capture_output=True, timeout=max(timeout, 10), check=False)
        if done.returncode == 0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
