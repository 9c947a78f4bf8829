"""Function runs per second through a real deployment on PostgreSQL + Redis.

Starts api, scheduler and 2 workers as separate processes (bench/deployment.py, Redis
broker, ``executor_types = ["function"]``), creates a function task calling
``os:getpid`` (a no-op that any interpreter can import), then writes N pending runs
straight into PostgreSQL in batches and publishes them to Redis, as the scheduler does
when a burst of fires is due (the API's trigger path costs ~3 ms of CPU per run on its
own and is what bench/e2e.py measures; ``python -m bench.e2e --executor function``).
Measured: completed runs per second from the first insert to the last
``completed_at``, and created -> started p50/p99 (``started_at`` is the claim).
Nothing asserts: a run that does not end in time is reported as not completed.

    python -m bench.function_runs [--runs 20000] [--workers 2] [--concurrency 16]
    python -m bench.function_runs --executor-only   # the pool alone: no database, no broker

``--executor-only`` calls the function executor directly from ``--concurrency`` threads
of this process (what a worker's run threads do), so the executor's own ceiling can be
told apart from the claim/report path around it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import scratch_database, summary_ms, table, url_of, write_result
from bench.deployment import BROKER_URLS, deployment
from bench.e2e import Runs, create_task
from schedd.brokers.base import Message
from schedd.brokers.redis import RedisBroker
from schedd.config import load_settings
from schedd.db import Database
from schedd.models import TaskRun
from schedd.services.runs import dispatch
from schedd.types import utcnow

runs_table = TaskRun.__table__  # type: ignore[attr-defined]
BATCH = 1000


def publish_runs(
    db: Database, broker: RedisBroker, task_id: int, task_type: str, count: int
) -> None:
    """``count`` pending runs, committed then published in batches (the outbox order)."""
    for start in range(0, count, BATCH):
        size = min(BATCH, count - start)
        now = utcnow()
        rows = [
            {
                "task_id": task_id,
                "status": "pending",
                "task_type": task_type,
                "priority": 1,
                "trigger": "manual",
                "retry_count": 0,
                "created_at": now,
            }
            for _ in range(size)
        ]
        with db.session() as session:
            ids = (
                session.execute(sa.insert(runs_table).returning(runs_table.c.id), rows)
                .scalars()
                .all()
            )
        dispatch(db, broker, [Message(int(run_id), 1, task_type) for run_id in ids])


def measure(opts: Any) -> dict[str, Any]:
    with (
        scratch_database("postgresql", max_connections=4) as db,
        tempfile.TemporaryDirectory() as home,
        deployment(url_of(db), "redis", Path(home), opts) as dep,
    ):
        runs = Runs(db, create_task(dep, "bench-function", executor="function"), dep.task_type)
        settings = load_settings(
            env={
                "DATABASE_URL": url_of(db),
                "HOME": home,
                "SCHEDD_MESSAGE_QUEUE__TYPE": "redis",
                "SCHEDD_MESSAGE_QUEUE__URL": BROKER_URLS["redis"],
            }
        )
        broker = RedisBroker(settings, db)
        try:
            warm = runs.last_id()  # start every pool process before measuring
            publish_runs(db, broker, runs.task_id, dep.task_type, 200)
            runs.wait_ended(warm, 200, opts.stall)
            after = runs.last_id()
            cpu_before = dep.cpu_seconds()
            t0 = time.time()
            publish_runs(db, broker, runs.task_id, dep.task_type, opts.runs)
            published = time.time() - t0
            state = runs.wait_ended(after, opts.runs, opts.stall)
            cpu = {k: v - cpu_before[k] for k, v in dep.cpu_seconds().items()}
        finally:
            broker.close()
        end = state["last_completed_epoch"] or time.time()
        seconds = max(end - t0, 1e-6)
        return {
            "runs": opts.runs,
            "completed": state["completed"],
            "not_completed": opts.runs - state["completed"],
            "publish_seconds": round(published, 3),
            "seconds": round(seconds, 3),
            "runs_per_second": round(state["completed"] / seconds, 1),
            "created_to_started": summary_ms(runs.start_latencies(after)),
            "cpu_ms_per_run": {
                k: round(v * 1000 / max(state["completed"], 1), 3) for k, v in cpu.items()
            },
        }


def executor_only(opts: Any) -> dict[str, Any]:
    import threading

    from schedd.config import WorkerSettings
    from schedd.executors.base import RunSpec, StopSignal
    from schedd.executors.function import FunctionExecutor

    class Sink:
        def write(self, data: bytes) -> None:
            pass

    executor = FunctionExecutor(WorkerSettings(function_pool_size=opts.concurrency))
    run = RunSpec(1, 1, "bench", "function", "os:getpid", [], timeout=60.0)
    per_thread = opts.runs // opts.concurrency
    durations: list[float] = []

    def calls(count: int) -> None:
        for _ in range(count):
            outcome = executor.execute(run, Sink(), StopSignal())
            durations.append(outcome.duration)

    try:
        calls(opts.concurrency * 20)  # start every pool process
        durations.clear()
        threads = [
            threading.Thread(target=calls, args=(per_thread,)) for _ in range(opts.concurrency)
        ]
        t0 = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - t0
    finally:
        executor.close()
    done = per_thread * opts.concurrency
    return {
        "runs": done,
        "seconds": round(seconds, 3),
        "runs_per_second": round(done / seconds, 1),
        "call": summary_ms(durations),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=16, help="runs at once per worker")
    parser.add_argument("--redispatch-after", type=float, default=30.0)
    parser.add_argument("--stall", type=float, default=30.0, help="give up after no progress")
    parser.add_argument("--log-level", default="warning", help="the daemons' log level")
    parser.add_argument("--executor-only", action="store_true", help="the pool alone")
    opts = parser.parse_args()
    opts.executor = "function"
    if opts.executor_only:
        alone = executor_only(opts)
        print(f"function executor alone, os:getpid, {opts.concurrency} threads and processes")
        print(
            table(
                ["runs", "seconds", "runs/s", "call p50 ms", "call p99 ms"],
                [
                    [
                        alone["runs"],
                        alone["seconds"],
                        alone["runs_per_second"],
                        alone["call"]["p50_ms"],
                        alone["call"]["p99_ms"],
                    ]
                ],
            )
        )
        print(f"written to {write_result('function_executor', {'options': vars(opts), **alone})}")
        return
    result = measure(opts)
    latency = result["created_to_started"]
    print(
        f"PostgreSQL + Redis, function os:getpid, {opts.workers} workers x "
        f"{opts.concurrency} (pool size = concurrency)"
    )
    print(
        table(
            ["runs", "completed", "seconds", "runs/s", "c->s p50 ms", "c->s p99 ms"],
            [
                [
                    result["runs"],
                    result["completed"],
                    result["seconds"],
                    result["runs_per_second"],
                    latency["p50_ms"],
                    latency["p99_ms"],
                ]
            ],
        )
    )
    print("CPU ms per run: " + ", ".join(f"{k} {v}" for k, v in result["cpu_ms_per_run"].items()))
    print(f"written to {write_result('function_runs', {'options': vars(opts), **result})}")


if __name__ == "__main__":
    main()
