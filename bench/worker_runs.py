"""Worker throughput: runs per second of the shell task `true` through one worker.

N pending runs of a shell task whose command is `true` wait in the database; one
worker (the real WorkerRole, in this process, database broker) with
max_concurrent_tasks 16 claims, executes and reports them. Measured from the worker's
start until the last run is recorded completed, on SQLite and on PostgreSQL.

``--cgroups both`` measures each backend twice, with one cgroup per run (the worker's
``worker.cgroups = "auto"``, where this host allows it) and with the process-group
fallback (``off``), and prints what cgroup mode costs per run: the difference of the
mean execution times (the sh trampoline that joins the cgroup, making and removing
the cgroup, reading its counters).

    python -m bench.worker_runs [--runs 2000] [--concurrency 16] [--backend both]
        [--cgroups auto|off|both]
"""

from __future__ import annotations

import argparse
import os
import pwd
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import scratch_database, summary_ms, table, url_of, write_result
from schedd.brokers.database import DatabaseBroker
from schedd.config import load_settings
from schedd.daemon import Context
from schedd.db import Database
from schedd.models import RunStatus, Task, TaskRun
from schedd.worker.role import WorkerRole

runs_table = TaskRun.__table__  # type: ignore[attr-defined]


def prepare(db: Database, count: int) -> None:
    with db.session() as session:
        task = Task(name="bench-true", task_type="shell", executor="shell", command="true")
        session.add(task)
        session.flush()
        session.add_all(
            TaskRun(task_id=task.id, status=RunStatus.pending.value, task_type="shell")
            for _ in range(count)
        )


def completed(db: Database) -> int:
    with db.session() as session:
        query = sa.select(sa.func.count()).where(runs_table.c.status == RunStatus.completed.value)
        return int(session.execute(query).scalar_one())


def measure(backend: str, count: int, concurrency: int, cgroups: str = "auto") -> dict[str, Any]:
    with scratch_database(backend, max_connections=10) as db, tempfile.TemporaryDirectory() as home:
        prepare(db, count)
        settings = load_settings(
            env={
                "DATABASE_URL": url_of(db),
                "HOME": str(Path(home)),
                "SCHEDD_WORKER__MAX_CONCURRENT_TASKS": str(concurrency),
                "SCHEDD_WORKER__HEARTBEAT_INTERVAL": "1",
                "SCHEDD_WORKER__CGROUPS": cgroups,
                # The bench's own user: no switch (a root worker must name one).
                "SCHEDD_WORKER__RUN_AS": pwd.getpwuid(os.geteuid()).pw_name,
            }
        )
        broker = DatabaseBroker(settings, db)
        role = WorkerRole(Context(settings=settings, db=db, broker=broker))
        mode = role.cgroups.mode
        started = time.perf_counter()
        role.start()
        while completed(db) < count:
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        role.stop(graceful=True)
        role.join(30)
        broker.close()
        with db.session() as session:
            durations = session.execute(sa.select(runs_table.c.execution_time)).scalars().all()
            failed = session.execute(
                sa.select(sa.func.count()).where(runs_table.c.status != RunStatus.completed.value)
            ).scalar_one()
    known = [d for d in durations if d is not None]
    return {
        "backend": backend,
        "isolation": mode,
        "mean_execution_ms": round(1000 * sum(known) / max(1, len(known)), 3),
        "runs": count,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "runs_per_second": round(count / elapsed, 1),
        "not_completed": failed,
        "execution_time": summary_ms([d for d in durations if d is not None]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--cgroups", choices=["auto", "off", "both"], default="auto")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    modes = ["auto", "off"] if args.cgroups == "both" else [args.cgroups]
    results = [
        measure(backend, args.runs, args.concurrency, mode)
        for backend in backends
        for mode in modes
    ]
    print(
        f"shell `true` through one worker, max_concurrent_tasks {args.concurrency}, "
        f"{args.runs} runs"
    )
    print(
        table(
            [
                "database",
                "isolation",
                "runs/s",
                "seconds",
                "exec mean ms",
                "exec p50 ms",
                "exec p99 ms",
                "not completed",
            ],
            [
                [
                    r["backend"],
                    r["isolation"],
                    r["runs_per_second"],
                    r["seconds"],
                    r["mean_execution_ms"],
                    r["execution_time"]["p50_ms"],
                    r["execution_time"]["p99_ms"],
                    r["not_completed"],
                ]
                for r in results
            ],
        )
    )
    for backend in backends:
        by_mode = {r["isolation"]: r for r in results if r["backend"] == backend}
        cgroup = by_mode.get("cgroup2") or by_mode.get("hybrid")
        if cgroup is not None and "none" in by_mode:
            extra = cgroup["mean_execution_ms"] - by_mode["none"]["mean_execution_ms"]
            print(
                f"{backend}: cgroup mode ({cgroup['isolation']}) costs {extra:+.2f} ms per "
                f"run of execution time, {cgroup['runs_per_second']} against "
                f"{by_mode['none']['runs_per_second']} runs/s"
            )
    print(f"written to {write_result('worker_runs', {'results': results})}")


if __name__ == "__main__":
    main()
