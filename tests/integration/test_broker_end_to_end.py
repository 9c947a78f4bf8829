"""Runs through each broker end to end: all complete, each exactly once, across restarts.

Real workers (WorkerRole, two per test, in this process) consume from the real broker
and claim in PostgreSQL; the outbox sweeper republishes what a restart lost. Every run
appends its id to a file, so "exactly once" is counted, not inferred from the status.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pytest
import sqlalchemy as sa

from schedd.brokers.base import Message
from schedd.brokers.rabbitmq import RabbitMQBroker
from schedd.brokers.redis import RedisBroker
from schedd.config import load_settings
from schedd.daemon import Context
from schedd.db import Database, create_database
from schedd.errors import Unavailable
from schedd.models import Task, TaskRun
from schedd.worker.role import WorkerRole
from tests import brokerkit, proc

pytestmark = [pytest.mark.external_service, pytest.mark.slow]

REDIS_START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
]


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    db = create_database(pg_url, max_connections=20)
    yield db
    db.dispose()


def service_url(request: pytest.FixtureRequest, kind: str) -> str:
    if kind == "database":
        return ""
    return str(request.getfixturevalue(f"{kind}_url"))


def run_through(
    kind: str,
    url: str,
    db: Database,
    home: Path,
    count: int,
    *,
    outage: tuple[Callable[[], None], Callable[[], None]] | None = None,
) -> None:
    """Trigger ``count`` runs in two halves; with ``outage`` (stop, start) the broker is
    stopped once part of the first half completed, the second half is triggered while
    it is down, then it is started again."""
    namespace = f"sched-e2e-{uuid.uuid4().hex[:8]}"
    log_file = home / "executions.log"
    settings = brokerkit.broker_settings(kind, url, brokerkit._url(db), home)
    publisher = brokerkit.make_broker(kind, settings, db, namespace)
    try:
        task_id = brokerkit.counting_task(db, log_file)
        with (
            brokerkit.workers(kind, url, db, home, namespace, 2),
            brokerkit.sweeping(db, publisher, redispatch_after=3.0),
        ):
            ids = brokerkit.trigger(db, publisher, task_id, count // 2)
            if outage is not None:
                stop, start = outage
                assert brokerkit.wait_for(lambda: brokerkit.statuses(db, ids)["completed"] > 20, 30)
                try:
                    stop()
                    with pytest.raises(Unavailable):
                        publisher.health()  # the outage is real
                    ids += brokerkit.trigger(db, publisher, task_id, count - count // 2)
                finally:
                    start()
            else:
                ids += brokerkit.trigger(db, publisher, task_id, count - count // 2)
            found = brokerkit.wait_all_completed(db, ids, timeout=90)
        assert found == {"completed": count}
        ran = brokerkit.executions(log_file)
        assert set(ran) == set(ids)
        assert max(ran.values()) == 1, [r for r, n in ran.items() if n > 1][:10]
    finally:
        if kind != "database":
            publisher.purge(["shell"])  # type: ignore[attr-defined]
        publisher.close()


@pytest.mark.parametrize("kind", ["database", "rabbitmq", "redis"])
def test_a_thousand_runs_each_complete_exactly_once(
    kind: str, request: pytest.FixtureRequest, pg_db: Database, tmp_path: Path
) -> None:
    run_through(kind, service_url(request, kind), pg_db, tmp_path, 1000)


def stop_rabbitmq() -> None:
    subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=60)


def start_rabbitmq() -> None:
    subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=120)
    subprocess.run(["rabbitmqctl", "-q", "await_startup"], check=True, timeout=120)


def stop_redis() -> None:
    subprocess.run(["redis-cli", "shutdown", "nosave"], check=False, timeout=30)
    assert brokerkit.wait_for_command(["sh", "-c", "! redis-cli ping"], 10)


def start_redis() -> None:
    if brokerkit.wait_for_command(["redis-cli", "ping"], 0.1):
        return
    Path("/var/lib/redis").mkdir(parents=True, exist_ok=True)
    subprocess.run(REDIS_START, check=True, timeout=30)
    assert brokerkit.wait_for_command(["redis-cli", "ping"], 30), "Redis did not come back"


@pytest.mark.broker_restart
@pytest.mark.parametrize("kind", ["rabbitmq", "redis"])
def test_runs_survive_a_broker_restart_midway(
    kind: str, request: pytest.FixtureRequest, pg_db: Database, tmp_path: Path
) -> None:
    url = service_url(request, kind)
    outage = (stop_rabbitmq, start_rabbitmq) if kind == "rabbitmq" else (stop_redis, start_redis)
    try:
        run_through(kind, url, pg_db, tmp_path, 500, outage=outage)
    finally:
        outage[1]()  # idempotent: the service is up for the tests after this one


def test_a_sigkilled_workers_unacked_deliveries_complete_elsewhere(
    rabbitmq_url: str, pg_db: Database, tmp_path: Path
) -> None:
    """A worker process full of long runs holds prefetched, unacked deliveries; killed
    with SIGKILL, RabbitMQ requeues them and a surviving worker completes those runs.
    (The runs it had claimed are the reaper's business, tested with the scheduler.)"""
    task_type = f"kill{uuid.uuid4().hex[:8]}"
    log_file = tmp_path / "executions.log"
    url = brokerkit._url(pg_db)
    settings = brokerkit.broker_settings("rabbitmq", rabbitmq_url, url, tmp_path)
    publisher = RabbitMQBroker(settings)  # the default namespace, as `schedd run` uses
    env = {
        "DATABASE_URL": url,
        "SCHEDD_MESSAGE_QUEUE__TYPE": "rabbitmq",
        "SCHEDD_MESSAGE_QUEUE__URL": rabbitmq_url,
        "SCHEDD_WORKER__TASK_TYPES": task_type,
        "SCHEDD_WORKER__MAX_CONCURRENT_TASKS": "2",
    }
    victim = subprocess.Popen(
        proc.schedd("run", "--role", "worker"),
        env=proc.isolated_env(tmp_path, env),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ids = slow_runs(pg_db, task_type, log_file, sleep=60)
        brokerkit.dispatch(pg_db, publisher, [Message(i, 1, task_type) for i in ids])
        # Two runs claimed (running) by the victim; it holds more deliveries unacked.
        assert brokerkit.wait_for(lambda: len(brokerkit.executions(log_file)) == 2, 20)
        time.sleep(0.5)
        ready = ready_messages(rabbitmq_url, publisher.queue_name(task_type))
        assert ready < len(ids) - 2, "the victim held no unacked delivery"
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        claimed_by_victim = set(brokerkit.executions(log_file))
        survivor_settings = brokerkit.broker_settings(
            "rabbitmq", rabbitmq_url, url, tmp_path, task_types=task_type, id=f"s-{task_type}"
        )
        survivor_broker = RabbitMQBroker(survivor_settings)
        role = WorkerRole(Context(settings=survivor_settings, db=pg_db, broker=survivor_broker))
        role.start()
        try:
            rest = [i for i in ids if i not in claimed_by_victim]
            assert brokerkit.wait_for(lambda: set(brokerkit.executions(log_file)) == set(ids), 20)
            assert brokerkit.statuses(pg_db, rest) == {"running": len(rest)}
            assert max(brokerkit.executions(log_file).values()) == 1
        finally:
            role.stop(graceful=False)
            role.join(30)
            survivor_broker.close()
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(10)
        publisher.purge([task_type])
        publisher.close()


def test_a_sigkilled_redis_workers_pending_entries_are_claimed_by_another(
    redis_url: str, pg_db: Database, tmp_path: Path
) -> None:
    """A `schedd run --role worker` process on Redis dies (SIGKILL) holding read but
    unacked stream entries (stuck claiming their runs: the test holds the rows' locks);
    a surviving worker takes them over by XAUTOCLAIM after claim_idle_seconds (1 s,
    from the environment) and runs each exactly once. No scheduler runs, so the outbox
    sweeper cannot be what recovers them. (The runs the victim had claimed are the
    reaper's business, tested with the scheduler.)"""
    task_type = f"kill{uuid.uuid4().hex[:8]}"
    log_file = tmp_path / "executions.log"
    url = brokerkit._url(pg_db)
    env = {
        "DATABASE_URL": url,
        "SCHEDD_MESSAGE_QUEUE__TYPE": "redis",
        "SCHEDD_MESSAGE_QUEUE__URL": redis_url,
        "SCHEDD_MESSAGE_QUEUE__CLAIM_IDLE_SECONDS": "1",
        "SCHEDD_WORKER__TASK_TYPES": task_type,
        "SCHEDD_WORKER__MAX_CONCURRENT_TASKS": "4",
        **proc.RUN_AS_SELF,
    }
    publisher = RedisBroker(load_settings(env={**env, "HOME": str(tmp_path)}))
    stream = publisher.stream(task_type, 1)  # the default namespace, as `schedd run` uses
    victim: subprocess.Popen[bytes] | None = None
    try:
        ids = slow_runs(pg_db, task_type, log_file, sleep=30)
        victim = subprocess.Popen(
            proc.schedd("run", "--role", "worker"),
            env=proc.isolated_env(tmp_path, env),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # The victim claims ids[0] and ids[1] (2 of its 4 slots) ...
        brokerkit.dispatch(pg_db, publisher, [Message(i, 1, task_type) for i in ids[:2]])
        assert brokerkit.wait_for(lambda: len(brokerkit.executions(log_file)) == 2, 20)
        assert set(brokerkit.executions(log_file)) == set(ids[:2])
        with pg_db.engine.connect() as locker, locker.begin():
            # ... then blocks claiming what it reads of the rest (its claim waits for
            # the locks the test holds), which it holds read but unacked.
            locker.execute(
                sa.select(brokerkit.runs_table.c.id)
                .where(brokerkit.runs_table.c.id.in_(ids[2:]))
                .with_for_update()
            ).all()
            brokerkit.dispatch(pg_db, publisher, [Message(i, 1, task_type) for i in ids[2:]])
            assert brokerkit.wait_for(lambda: bool(pending_runs(publisher, stream)), 5)
            held = pending_runs(publisher, stream)
            assert set(held.values()) == {f"{socket.gethostname()}-{victim.pid}"}
            assert set(held) <= set(ids[2:]), held
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
        # The locks are gone; the victim's entries stay pending under its dead consumer.
        assert pending_runs(publisher, stream) == held
        survivor_settings = load_settings(
            env={**env, "HOME": str(tmp_path), "SCHEDD_WORKER__ID": f"s-{task_type}"}
        )
        survivor_broker = RedisBroker(survivor_settings)
        assert survivor_broker.claim_idle == 1.0
        role = WorkerRole(Context(settings=survivor_settings, db=pg_db, broker=survivor_broker))
        role.start()
        try:
            assert brokerkit.wait_for(lambda: set(brokerkit.executions(log_file)) == set(ids), 20)
            assert brokerkit.statuses(pg_db, ids[2:]) == {"running": 4}
            assert max(brokerkit.executions(log_file).values()) == 1
            assert brokerkit.wait_for(lambda: not pending_runs(publisher, stream), 5)
        finally:
            role.stop(graceful=False)
            role.join(30)
            survivor_broker.close()
    finally:
        if victim is not None and victim.poll() is None:
            victim.kill()
            victim.wait(10)
        publisher.purge([task_type])
        publisher.close()


def pending_runs(broker: RedisBroker, stream: str) -> dict[int, str]:
    """Run id -> consumer (its ``<host>-<pid>`` part) of every read but unacked entry."""
    entries = broker.client.xpending_range(stream, broker.group, min="-", max="+", count=100)
    found: dict[int, str] = {}
    for entry in entries:
        for _, fields in broker.client.xrange(stream, entry["message_id"], entry["message_id"]):
            consumer = entry["consumer"].decode().rsplit("-", 1)[0]
            found[int(fields[b"run_id"])] = consumer
    return found


def slow_runs(db: Database, task_type: str, log_file: Path, *, sleep: int) -> list[int]:
    """A shell task that records each execution in ``log_file`` and then sleeps, with
    six pending runs of it; their ids."""
    with db.session() as session:
        task = Task(
            name=f"slow-{task_type}",
            task_type=task_type,
            executor="shell",
            command=f'echo "$SCHED_RUN_ID" >> {log_file}; sleep {sleep}',
        )
        session.add(task)
        session.flush()
        assert task.id is not None
        rows = [TaskRun(task_id=task.id, status="pending", task_type=task_type) for _ in range(6)]
        session.add_all(rows)
        session.flush()
        return [int(r.id) for r in rows if r.id is not None]


def ready_messages(url: str, queue: str) -> int:
    """Messages in ``queue`` not delivered to any consumer (unacked ones not counted)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        declared = connection.channel().queue_declare(queue, passive=True)
        return int(declared.method.message_count)
    finally:
        connection.close()
