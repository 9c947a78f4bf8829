"""Dashboard pages: server time per page with many tasks and runs.

Fills a scratch database (SQLite and/or PostgreSQL) with --tasks tasks (cron schedules
in several zones, tags, dependency chains) and --runs runs spread over the last two
days (mostly completed, some failed, timed out, cancelled; a few running), plus
workers, system events and audit entries; serves the API with the dashboard in this
process (uvicorn on loopback, as the api role does) and signs in with an API key.
Then requests every page in turn, interleaved, --rounds times after a warm-up, and
reports each page's latency as the client on the same host sees it (loopback HTTP
included, so it is the server's time plus well under a millisecond).

    python -m bench.ui_pages [--tasks 10000] [--runs 1000000] [--rounds 20]
                             [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn

from bench.common import scratch_database, summary_ms, table, write_result
from schedd.api.app import create_app
from schedd.api.role import bind
from schedd.config import Settings
from schedd.db import Database
from schedd.models import AuditEntry, SystemLog, Task, TaskDependency, TaskRun, Worker
from schedd.schemas import SCOPES
from schedd.services import auth

SECRET = "bench-secret-" + "b" * 40
BATCH = 20_000
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]
SCHEDULES = ["0 */5 * * * *", "0 0 * * * *", "0 30 2 * * *", "0 0 9 * * 1-5", "*/30 * * * * *"]
TAGS = ["etl", "billing", "reports", "backup", "ml", "ops"]
_STATUS = (
    "CASE WHEN g > :n - 20 THEN 'running' WHEN g % 100 < 90 THEN 'completed'"
    " WHEN g % 100 < 95 THEN 'failed' WHEN g % 100 < 97 THEN 'timeout'"
    " WHEN g % 100 < 99 THEN 'cancelled' ELSE 'lost' END"
)
_COLUMNS = (
    "task_id, worker_id, status, created_at, started_at, completed_at, execution_time,"
    " exit_code, trigger, task_type, priority, retry_count, claim, cancel_requested,"
    " output_bytes"
)
_TASK = "CASE WHEN g % 10 = 0 THEN 1 ELSE 1 + (g * 7919) % :tasks END"  # g is bigint
_TOOK = "(0.05 + (g * 37 % 3000) / 100.0)"
_AT = ":now - :span * (1 - g * 1.0 / :n)"  # epoch seconds of run g's creation
RUNS_SQL = {
    "postgresql": f"""
        INSERT INTO task_runs ({_COLUMNS})
        SELECT {_TASK}, 'worker-' || lpad((g % 20)::text, 2, '0'), s,
               to_timestamp({_AT}), to_timestamp({_AT} + 0.01),
               CASE WHEN s = 'running' THEN NULL ELSE to_timestamp({_AT} + {_TOOK}) END,
               CASE WHEN s = 'running' THEN NULL ELSE {_TOOK} END,
               CASE WHEN s = 'running' THEN NULL WHEN s = 'completed' THEN 0 ELSE 1 END,
               'manual', 'shell', 1, 0, 1, false, 0
        FROM (SELECT g, {_STATUS} AS s FROM generate_series(1::bigint, :n) AS g) AS gen
    """,
    "sqlite": f"""
        INSERT INTO task_runs ({_COLUMNS})
        WITH RECURSIVE series(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM series WHERE g < :n),
        gen AS (SELECT g, {_STATUS} AS s FROM series)
        SELECT {_TASK}, 'worker-' || printf('%02d', g % 20), s,
               strftime('%Y-%m-%d %H:%M:%f000', {_AT}, 'unixepoch'),
               strftime('%Y-%m-%d %H:%M:%f000', {_AT} + 0.01, 'unixepoch'),
               CASE WHEN s = 'running' THEN NULL
                    ELSE strftime('%Y-%m-%d %H:%M:%f000', {_AT} + {_TOOK}, 'unixepoch') END,
               CASE WHEN s = 'running' THEN NULL ELSE {_TOOK} END,
               CASE WHEN s = 'running' THEN NULL WHEN s = 'completed' THEN 0 ELSE 1 END,
               'manual', 'shell', 1, 0, 1, 0, 0
        FROM gen
    """,
}


def _insert(db: Database, table: Any, rows: list[dict[str, Any]]) -> None:
    with db.engine.begin() as conn:
        for start in range(0, len(rows), BATCH):
            conn.execute(sa.insert(table), rows[start : start + BATCH])


def seed(db: Database, n_tasks: int, n_runs: int, now: datetime) -> dict[str, int]:
    rng = random.Random(16)
    tasks = Task.__table__  # type: ignore[attr-defined]
    _insert(
        db,
        tasks,
        [
            {
                "name": f"task-{i:05d}",
                "description": "",
                "task_type": "shell",
                "executor": "shell",
                "command": f"echo {i}",
                "arguments": [],
                "schedule": SCHEDULES[i % len(SCHEDULES)],
                "timezone": ZONES[i % len(ZONES)],
                "priority": "normal",
                "retry_count": 0,
                "retry_delay_seconds": 10.0,
                "status": "paused" if i % 20 == 0 else "active",
                "concurrency_policy": "allow",
                "misfire_policy": "fire_once",
                "tags": [TAGS[i % len(TAGS)], TAGS[(i // 7) % len(TAGS)]],
                "metadata": {},
                "environment": {},
                "created_at": now - timedelta(days=30),
                "updated_at": now - timedelta(days=30),
                "last_run_at": now - timedelta(minutes=1),
                "next_run_at": now + timedelta(seconds=rng.randint(1, 3600)),
            }
            for i in range(1, n_tasks + 1)
        ],
    )
    # Chains of three: task 3k+2 depends on 3k+1, task 3k+3 on 3k+2.
    deps = TaskDependency.__table__  # type: ignore[attr-defined]
    _insert(
        db,
        deps,
        [{"task_id": i, "depends_on_id": i - 1} for i in range(2, n_tasks + 1) if i % 3 != 1],
    )
    # Runs are generated by the database itself (a million rows through Python would
    # take minutes): one hot task gets a tenth of them, the rest spread over all tasks,
    # created evenly over the last 48 hours; the newest 20 are still running.
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(RUNS_SQL[db.engine.dialect.name]),
            {
                "n": n_runs,
                "tasks": n_tasks,
                "now": now.timestamp(),
                "span": 48 * 3600,
            },
        )
    runs = TaskRun.__table__  # type: ignore[attr-defined]
    hot = 1
    workers = Worker.__table__  # type: ignore[attr-defined]
    _insert(
        db,
        workers,
        [
            {
                "id": f"worker-{w:02d}",
                "hostname": f"host-{w:02d}",
                "task_types": ["shell"],
                "executor_types": ["shell"],
                "max_concurrent_tasks": 8,
                "current_task_count": 1,
                "status": "active",
                "last_heartbeat": now,
                "registered_at": now - timedelta(days=1),
                "load_average": 1.5,
                "memory_usage": 900.0,
                "cpu_usage": 40.0,
            }
            for w in range(20)
        ],
    )
    _insert(
        db,
        SystemLog.__table__,  # type: ignore[attr-defined]
        [
            {
                "time": now - timedelta(seconds=i * 5),
                "level": "warning" if i % 10 == 0 else "info",
                "levelno": 30 if i % 10 == 0 else 20,
                "component": ["scheduler", "worker", "api"][i % 3],
                "message": f"event {i}",
                "refs": {"task_id": i % n_tasks + 1},
            }
            for i in range(20_000)
        ],
    )
    _insert(
        db,
        AuditEntry.__table__,  # type: ignore[attr-defined]
        [
            {
                "time": now - timedelta(seconds=i * 7),
                "actor": "key:1:admin",
                "action": ["task.trigger", "task.pause", "run.cancel"][i % 3],
                "target": f"task:{i % n_tasks + 1}",
                "outcome": "ok",
                "detail": {},
            }
            for i in range(20_000)
        ],
    )
    with db.engine.connect() as conn:
        some_run = conn.execute(
            sa.select(sa.func.max(runs.c.id)).where(runs.c.task_id == hot)
        ).scalar_one()
        conn.execute(sa.text("ANALYZE"))
        conn.commit()
    return {"hot_task": hot, "hot_run": int(some_run), "chain_task": 5}


@contextmanager
def serving(db: Database, data_dir: str) -> Iterator[str]:
    settings = Settings.model_validate(
        {"auth": {"jwt_secret": SECRET}, "daemon": {"data_dir": data_dir}}
    )
    app = create_app(settings, db)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def signed_in(url: str, key: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    form = client.get("/ui/signin").text
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', form)
    assert token is not None
    done = client.post("/ui/signin", data={"csrf": token.group(1), "api_key": key})
    assert done.status_code == 303, done.text
    return client


def pages(ids: dict[str, int]) -> list[tuple[str, str]]:
    return [
        # The API's own list of tasks, for scale: measured in the same rounds.
        ("API GET /api/tasks (reference)", "/api/tasks?size=50"),
        ("overview", "/ui/"),
        ("tasks", "/ui/tasks"),
        ("tasks ?q=", "/ui/tasks?q=task-012"),
        ("tasks ?tag=", "/ui/tasks?tag=billing&status=active"),
        ("tasks page 150", "/ui/tasks?page=150"),
        ("task (hot, 10% of runs)", f"/ui/tasks/{ids['hot_task']}"),
        ("task (in a chain)", f"/ui/tasks/{ids['chain_task']}"),
        ("run", f"/ui/runs/{ids['hot_run']}"),
        ("workers", "/ui/workers"),
        ("timeline 6 h", "/ui/timeline?hours=6"),
        ("events", "/ui/events?level=warning"),
        ("audit", "/ui/audit?action=task.pause"),
    ]


def measure(
    client: httpx.Client, targets: list[tuple[str, str]], rounds: int, key: str
) -> dict[str, Any]:
    client.headers["Authorization"] = f"Bearer {key}"  # for the API reference only
    for _, path in targets:  # warm-up: templates compiled, caches filled
        for _ in range(2):
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code, response.text[:300])
    times: dict[str, list[float]] = {name: [] for name, _ in targets}
    for _ in range(rounds):
        for name, path in targets:  # interleaved: drift hits every page alike
            start = time.perf_counter()
            response = client.get(path)
            times[name].append(time.perf_counter() - start)
            assert response.status_code == 200
    return {name: summary_ms(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    results: dict[str, Any] = {"tasks": args.tasks, "runs": args.runs, "rounds": args.rounds}
    for backend in args.backends.split(","):
        with scratch_database(backend) as db:
            now = datetime.now(UTC)
            began = time.perf_counter()
            ids = seed(db, args.tasks, args.runs, now)
            print(f"{backend}: seeded in {time.perf_counter() - began:.1f} s", flush=True)
            with db.session() as session:
                key = auth.create_api_key(session, "bench", list(SCOPES), creator=None).key
            with serving(db, f"/tmp/sched-bench-ui-{backend}") as url:
                client = signed_in(url, key)
                try:
                    found = measure(client, pages(ids), args.rounds, key)
                finally:
                    client.close()
            results[backend] = found
            rows = [[name, s["p50_ms"], s["p95_ms"], s["max_ms"]] for name, s in found.items()]
            print(f"\n{backend}: {args.tasks} tasks, {args.runs} runs, {args.rounds} rounds")
            print(table(["page", "p50 ms", "p95 ms", "max ms"], rows), flush=True)
    path = write_result("ui_pages", results)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
