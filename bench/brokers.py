"""Brokers compared: no-op runs end to end, and raw broker messages per second.

Per broker (database on PostgreSQL, RabbitMQ, Redis), on a scratch PostgreSQL database:

- end to end: N runs of the shell task `true` are committed pending and published in
  batches of 200 (as the scheduler does), while two worker roles in this process
  (max_concurrent_tasks 16 each) consume, claim and execute them. Reported: completed
  runs per second (first commit to last completion) and trigger-to-start latency
  (``started_at - created_at``) p50/p99.
- raw: M messages published in batches of 100, then consumed (max_count 100) and acked
  by one consumer until drained; messages per second for each loop. The database broker
  carries no messages, so it has no raw figures.
- paced: the same end to end, with runs triggered at ``--paced-rate`` runs/s (below
  every broker's capacity), so trigger-to-start is the hand-over latency rather than
  time spent in a backlog.

    python -m bench.brokers [--runs 10000] [--messages 20000] [--paced-runs 1000]
        [--paced-rate 50] [--broker all]

Needs PostgreSQL, RabbitMQ and Redis on loopback (SCHED_BENCH_RABBITMQ_URL,
SCHED_BENCH_REDIS_URL override the URLs).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from typing import Any

import sqlalchemy as sa

from bench.common import scratch_database, summary_ms, table, url_of, write_result
from schedd.brokers.base import Broker, Message
from schedd.brokers.database import DatabaseBroker
from schedd.brokers.rabbitmq import RabbitMQBroker
from schedd.brokers.redis import RedisBroker
from schedd.config import Settings, load_settings
from schedd.daemon import Context
from schedd.db import Database
from schedd.models import RunStatus, Task, TaskRun
from schedd.services.runs import dispatch
from schedd.worker.role import WorkerRole

runs_table = TaskRun.__table__  # type: ignore[attr-defined]

URLS = {
    "database": "",
    "rabbitmq": os.environ.get("SCHED_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    "redis": os.environ.get("SCHED_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
}
WORKERS = 2
CONCURRENCY = 16
BATCH = 200


def settings_for(kind: str, db: Database, home: str, worker_id: str) -> Settings:
    env = {
        "DATABASE_URL": url_of(db),
        "HOME": home,
        "SCHEDD_WORKER__ID": worker_id,
        "SCHEDD_WORKER__MAX_CONCURRENT_TASKS": str(CONCURRENCY),
        "SCHEDD_WORKER__HEARTBEAT_INTERVAL": "1",
    }
    if kind != "database":
        env["SCHEDD_MESSAGE_QUEUE__TYPE"] = kind
        env["SCHEDD_MESSAGE_QUEUE__URL"] = URLS[kind]
    return load_settings(env=env)


def make_broker(kind: str, settings: Settings, db: Database | None, namespace: str) -> Broker:
    if kind == "rabbitmq":
        return RabbitMQBroker(settings, namespace=namespace)
    if kind == "redis":
        return RedisBroker(settings, namespace=namespace)
    assert db is not None, "the database broker needs a database"
    return DatabaseBroker(settings, db)


def purge(broker: Broker, task_types: list[str]) -> None:
    if isinstance(broker, RabbitMQBroker | RedisBroker):
        broker.purge(task_types)


def completed(db: Database) -> int:
    with db.session() as session:
        query = sa.select(sa.func.count()).where(runs_table.c.status == RunStatus.completed.value)
        return int(session.execute(query).scalar_one())


def end_to_end(kind: str, count: int, rate: float | None = None) -> dict[str, Any]:
    """All ``count`` runs as fast as they commit, or ``rate`` runs/s in batches of 10."""
    batch = BATCH if rate is None else 10
    namespace = f"sched-bench-{uuid.uuid4().hex[:8]}"
    with (
        scratch_database("postgresql", max_connections=30) as db,
        tempfile.TemporaryDirectory() as home,
    ):
        with db.session() as session:
            task = Task(name="bench-true", task_type="shell", executor="shell", command="true")
            session.add(task)
            session.flush()
            assert task.id is not None
            task_id = task.id
        publisher = make_broker(kind, settings_for(kind, db, home, "p"), db, namespace)
        roles: list[tuple[WorkerRole, Broker]] = []
        for index in range(WORKERS):
            settings = settings_for(kind, db, home, f"bench-{index}")
            broker = make_broker(kind, settings, db, namespace)
            role = WorkerRole(Context(settings=settings, db=db, broker=broker))
            role.start()
            roles.append((role, broker))
        started = time.perf_counter()
        for first in range(0, count, batch):
            if rate is not None:
                time.sleep(max(0.0, started + first / rate - time.perf_counter()))
            with db.session() as session:
                rows = [
                    TaskRun(task_id=task_id, status=RunStatus.pending.value, task_type="shell")
                    for _ in range(min(batch, count - first))
                ]
                session.add_all(rows)
                session.flush()
                messages = [Message(int(r.id or 0), 1, "shell") for r in rows]
            dispatch(db, publisher, messages)
        deadline = time.monotonic() + 600
        while completed(db) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        for role, broker in roles:
            role.stop(graceful=True)
            role.join(30)
            broker.close()
        purge(publisher, ["shell"])
        publisher.close()
        with db.session() as session:
            latencies = [
                (start - created).total_seconds()
                for start, created in session.execute(
                    sa.select(runs_table.c.started_at, runs_table.c.created_at).where(
                        runs_table.c.started_at.is_not(None)
                    )
                ).all()
            ]
        done = completed(db)
    return {
        "broker": kind,
        "runs": count,
        "trigger_rate": rate,
        "workers": WORKERS,
        "concurrency": CONCURRENCY,
        "seconds": round(elapsed, 3),
        "runs_per_second": round(done / elapsed, 1),
        "not_completed": count - done,
        "trigger_to_start": summary_ms(latencies),
    }


def raw(kind: str, count: int) -> dict[str, Any]:
    namespace = f"sched-bench-raw-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as home:
        env = {
            "HOME": home,
            "SCHEDD_MESSAGE_QUEUE__TYPE": kind,
            "SCHEDD_MESSAGE_QUEUE__URL": URLS[kind],
        }
        settings = load_settings(env=env)
        broker = make_broker(kind, settings, None, namespace)
        try:
            started = time.perf_counter()
            for first in range(0, count, 100):
                broker.publish(
                    [Message(i, i % 4, "shell") for i in range(first, min(count, first + 100))]
                )
            published = time.perf_counter() - started
            started = time.perf_counter()
            received = 0
            deadline = time.monotonic() + 300
            while received < count and time.monotonic() < deadline:
                for delivery in broker.consume(["shell"], 100, 1.0):
                    broker.ack(delivery)
                    received += 1
            consumed = time.perf_counter() - started
        finally:
            purge(broker, ["shell"])
            broker.close()
    return {
        "broker": kind,
        "messages": count,
        "publish_per_second": round(count / published, 1),
        "consume_ack_per_second": round(received / consumed, 1),
        "received": received,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--paced-runs", type=int, default=1_000)
    parser.add_argument("--paced-rate", type=float, default=50.0)
    parser.add_argument("--broker", choices=["database", "rabbitmq", "redis", "all"], default="all")
    args = parser.parse_args()
    kinds = ["database", "rabbitmq", "redis"] if args.broker == "all" else [args.broker]
    runs = [end_to_end(kind, args.runs) for kind in kinds]
    paced = [end_to_end(kind, args.paced_runs, args.paced_rate) for kind in kinds]
    raws = [raw(kind, args.messages) for kind in kinds if kind != "database"]
    print(
        f"no-op shell runs, {WORKERS} workers x {CONCURRENCY} slots, {args.runs} runs, PostgreSQL"
    )
    print(
        table(
            ["broker", "runs/s", "seconds", "start p50 ms", "start p99 ms", "not completed"],
            [
                [
                    r["broker"],
                    r["runs_per_second"],
                    r["seconds"],
                    r["trigger_to_start"]["p50_ms"],
                    r["trigger_to_start"]["p99_ms"],
                    r["not_completed"],
                ]
                for r in runs
            ],
        )
    )
    print(f"\npaced: {args.paced_runs} runs triggered at {args.paced_rate:g} runs/s")
    print(
        table(
            ["broker", "start p50 ms", "start p99 ms", "not completed"],
            [
                [
                    r["broker"],
                    r["trigger_to_start"]["p50_ms"],
                    r["trigger_to_start"]["p99_ms"],
                    r["not_completed"],
                ]
                for r in paced
            ],
        )
    )
    if raws:
        print(f"\nraw broker, {args.messages} messages")
        print(
            table(
                ["broker", "publish msg/s", "consume+ack msg/s", "received"],
                [
                    [
                        r["broker"],
                        r["publish_per_second"],
                        r["consume_ack_per_second"],
                        r["received"],
                    ]
                    for r in raws
                ],
            )
        )
    path = write_result("brokers", {"end_to_end": runs, "paced": paced, "raw": raws})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
