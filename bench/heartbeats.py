"""Heartbeat handling: N simulated workers heartbeating once a second on PostgreSQL.

Every heartbeat goes through ``services.workers.heartbeat`` in its own transaction,
exactly as the worker role and ``POST /api/workers/{id}/heartbeat`` do it: update the
worker row and renew ``heartbeat_at`` of the worker's running runs. The workers are
spread evenly over each second and shared by several processes (each with a thread
pool), so the database sees a steady N heartbeats per second. Reported: the latency of
one heartbeat (session open to commit) and how late heartbeats started against their
schedule (non-zero lateness means the setup could not keep up), and, for reference, the
latency of heartbeats sent one after another by a single client.

    python -m bench.heartbeats [--workers 500] [--seconds 20] [--processes 4] [--threads 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import text

from bench.common import scratch_database, summary_ms, table, url_of, write_result
from schedd.db import Database, create_database
from schedd.models import RunStatus, Task, TaskRun
from schedd.schemas import HeartbeatIn
from schedd.services import workers

RUNS_PER_WORKER = 2


def setup(url: str, count: int) -> dict[str, list[int]]:
    """Register ``count`` workers, each holding RUNS_PER_WORKER running runs."""
    db = create_database(url)
    held: dict[str, list[int]] = {}
    with db.session() as session:
        task = Task(name="bench", task_type="shell", executor="shell", command="true")
        session.add(task)
        session.flush()
        for index in range(count):
            worker_id = f"bench-{index:04d}"
            workers.register(
                session,
                worker_id=worker_id,
                hostname="bench",
                ip_address="127.0.0.1",
                task_types=["shell"],
                executor_types=["shell"],
                max_concurrent_tasks=4,
                pid=index,
                version="bench",
                stale_after=60,
            )
            runs = [
                TaskRun(
                    task_id=task.id,
                    status=RunStatus.running.value,
                    worker_id=worker_id,
                    task_type="shell",
                    claim=1,
                )
                for _ in range(RUNS_PER_WORKER)
            ]
            session.add_all(runs)
            session.flush()
            held[worker_id] = [run.id for run in runs if run.id is not None]
    db.dispose()
    return held


def beat_process(
    url: str,
    assigned: list[tuple[str, list[int], float]],
    seconds: int,
    threads: int,
    ready: Any,
    go: Any,
    start: Any,
    queue: Any,
) -> None:
    """Heartbeat the ``assigned`` workers (id, runs, offset in the second) until the end."""
    db = create_database(url, max_connections=threads)
    with db.session() as session:  # connect before the clock starts
        session.execute(text("SELECT 1"))
    ready.put(True)
    go.wait()
    start_at = start.value
    load = HeartbeatIn(
        current_task_count=RUNS_PER_WORKER, load_average=0.4, memory_usage=1024.0, cpu_usage=12.5
    )
    latencies: list[float] = []
    lateness: list[float] = []

    def beat(worker_id: str, runs: list[int], due: float) -> None:
        started = time.perf_counter()
        lateness.append(max(0.0, time.time() - due))
        with db.session() as session:
            workers.heartbeat(session, worker_id, load, run_ids=runs)
        latencies.append(time.perf_counter() - started)

    schedule = sorted(
        (start_at + second + offset, worker_id, runs)
        for second in range(seconds)
        for worker_id, runs, offset in assigned
    )
    with ThreadPoolExecutor(threads) as pool:
        for due, worker_id, runs in schedule:
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            pool.submit(beat, worker_id, runs, due)
    db.dispose()
    queue.put((latencies, lateness))


def one_client(db: Database, held: dict[str, list[int]], count: int = 1000) -> list[float]:
    """Heartbeats one after another: the cost of one heartbeat without contention."""
    load = HeartbeatIn(current_task_count=RUNS_PER_WORKER)
    items = sorted(held.items())
    latencies = []
    for index in range(count):
        worker_id, runs = items[index % len(items)]
        started = time.perf_counter()
        with db.session() as session:
            workers.heartbeat(session, worker_id, load, run_ids=runs)
        latencies.append(time.perf_counter() - started)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=20)
    # Several processes with few threads each: with many threads in one process,
    # waiting for the GIL after each database round trip, not the database, sets the
    # latency the simulator measures.
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4, help="per process")
    args = parser.parse_args()

    with scratch_database("postgresql") as db:
        url = url_of(db)
        held = setup(url, args.workers)
        alone = one_client(db, held)
        parts: list[list[tuple[str, list[int], float]]] = [[] for _ in range(args.processes)]
        for index, (worker_id, runs) in enumerate(sorted(held.items())):
            parts[index % args.processes].append((worker_id, runs, index / args.workers))
        context = multiprocessing.get_context("spawn")
        queue, ready, go = context.Queue(), context.Queue(), context.Event()
        start = context.Value("d", 0.0)
        procs = [
            context.Process(
                target=beat_process,
                args=(url, part, args.seconds, args.threads, ready, go, start, queue),
            )
            for part in parts
        ]
        for process in procs:
            process.start()
        for _ in procs:  # every process has imported and connected
            ready.get()
        start.value = time.time() + 0.5
        go.set()
        latencies: list[float] = []
        lateness: list[float] = []
        for _ in procs:
            got_latencies, got_lateness = queue.get()
            latencies += got_latencies
            lateness += got_lateness
        for process in procs:
            process.join()

    beats = len(latencies)
    result = {
        "workers": args.workers,
        "seconds": args.seconds,
        "processes": args.processes,
        "threads_per_process": args.threads,
        "runs_per_worker": RUNS_PER_WORKER,
        "heartbeats": beats,
        "heartbeats_per_second": round(beats / args.seconds, 1),
        "latency": summary_ms(latencies),
        "start_lateness": summary_ms(lateness),
        "one_client_latency": summary_ms(alone),
    }
    print(
        f"heartbeat handling: {args.workers} workers x 1/s for {args.seconds} s on "
        f"PostgreSQL ({args.processes} processes x {args.threads} threads)"
    )
    rows = [
        [name, *result[key].values()]
        for name, key in (
            (f"latency at {args.workers}/s", "latency"),
            ("start lateness", "start_lateness"),
            ("latency, one client", "one_client_latency"),
        )
    ]
    print(table(["", "p50 ms", "p95 ms", "p99 ms", "max ms", "mean ms"], rows))
    print(f"{beats} heartbeats, {result['heartbeats_per_second']}/s")
    print(f"written to {write_result('heartbeats', result)}")


if __name__ == "__main__":
    main()
