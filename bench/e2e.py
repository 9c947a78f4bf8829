"""End to end: shell `true` (or function) runs triggered through the API of a deployment.

Starts api, scheduler and 2 workers as separate `schedd run --role X` processes on a
scratch PostgreSQL database and RabbitMQ or Redis (bench/deployment.py), creates a
shell task whose command is `true`, and measures:

- throughput: N triggers (POST /api/tasks/{id}/trigger, C keep-alive connections,
  back to back), completed runs per second from the first request to the last run's
  ``completed_at``;
- latency: triggers at a fixed rate (default half the measured throughput) for a few
  seconds; created -> started p50/p99 from the runs table (``started_at`` is the
  claim);
- overload (``--overload``): every-second scheduled tasks, as many as twice the
  measured throughput (the scheduler fires faster than the API takes triggers); each
  second the pending runs, the messages the broker holds and the oldest pending age;
  then the tasks are paused and the drain timed: how long the backlog takes to empty,
  and at what rate (compare with the throughput).

With the optional ``bench`` extra (celery) installed, Celery does the same work in the
same run (bench/celery_peer.py: prefork, same total concurrency, same broker, Redis
results) and the table shows both and the ratio. Nothing here asserts: a run that does
not finish in time is reported as not completed, never as a crash.

    python -m bench.e2e [--runs 2000] [--broker rabbitmq|redis|both] [--overload]
    python -m bench.e2e --executor function --broker redis   # os:getpid in the pool
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.common import scratch_database, summary_ms, table, url_of, write_result
from bench.deployment import Deployment, broker_depth, deployment
from bench.load import Load, drive
from schedd.db import Database

TERMINAL = ("completed", "failed", "timeout", "cancelled", "lost", "skipped")


# What a run does per --executor: nothing much, as cheaply as the executor allows.
NO_OP = {"shell": "true", "function": "os:getpid"}


def create_task(
    dep: Deployment,
    name: str = "bench-true",
    schedule: str | None = None,
    executor: str = "shell",
    status: str = "active",
) -> int:
    body = {"name": name, "executor": executor, "command": NO_OP[executor], "schedule": schedule}
    body["status"] = status
    body["task_type"] = dep.task_type
    response = httpx.post(
        dep.base + "/api/tasks", json=body, headers={"Authorization": f"Bearer {dep.key}"}
    )
    response.raise_for_status()
    return int(response.json()["id"])


class Runs:
    """Reads the runs of the bench's tasks (those with an id above ``after``)."""

    def __init__(self, db: Database, task_id: int, task_type: str) -> None:
        self.db = db
        self.task_id = task_id  # the task the triggers name
        self.task_type = task_type  # every bench task's, and no one else's

    def last_id(self) -> int:
        with self.db.engine.connect() as conn:
            query = "SELECT coalesce(max(id), 0) FROM task_runs WHERE task_type = :t"
            return int(conn.execute(sa.text(query), {"t": self.task_type}).scalar_one())

    def state(self, after: int) -> dict[str, Any]:
        query = sa.text(
            "SELECT count(*), count(*) FILTER (WHERE status = ANY(:terminal)),"
            " count(*) FILTER (WHERE status = 'completed'),"
            " count(*) FILTER (WHERE status = 'pending'),"
            " extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending')),"
            " extract(epoch FROM max(completed_at))"
            " FROM task_runs WHERE task_type = :t AND id > :after"
        )
        with self.db.engine.connect() as conn:
            row = conn.execute(
                query, {"t": self.task_type, "after": after, "terminal": list(TERMINAL)}
            ).one()
        return {
            "created": row[0],
            "ended": row[1],
            "completed": row[2],
            "pending": row[3],
            "oldest_pending_s": round(float(row[4]), 3) if row[4] is not None else 0.0,
            "last_completed_epoch": float(row[5]) if row[5] is not None else None,
        }

    def start_latencies(self, after: int) -> list[float]:
        query = sa.text(
            "SELECT extract(epoch FROM started_at - created_at) FROM task_runs"
            " WHERE task_type = :t AND id > :after AND started_at IS NOT NULL"
        )
        with self.db.engine.connect() as conn:
            rows = conn.execute(query, {"t": self.task_type, "after": after}).scalars()
            return [float(v) for v in rows]

    def wait_ended(self, after: int, expected: int, stall: float) -> dict[str, Any]:
        """Until ``expected`` runs ended, or nothing ended for ``stall`` seconds."""
        last_progress, ended = time.monotonic(), -1
        while True:
            state = self.state(after)
            if state["ended"] >= expected:
                return state
            if state["ended"] != ended:
                ended, last_progress = state["ended"], time.monotonic()
            elif time.monotonic() - last_progress > stall:
                return state
            time.sleep(0.1)


def run_load(pool: Any, load: Load) -> dict[str, Any]:
    return dict(pool.apply(drive, (load,)))


def throughput(dep: Deployment, runs: Runs, pool: Any, opts: Any) -> dict[str, Any]:
    after = runs.last_id()
    cpu_before = dep.cpu_seconds()
    t0 = time.time()
    sent = run_load(pool, Load(dep.port, dep.key, runs.task_id, opts.conns, count=opts.runs))
    state = runs.wait_ended(after, sent["accepted"], opts.stall)
    cpu = {k: v - cpu_before[k] for k, v in dep.cpu_seconds().items()}
    end = state["last_completed_epoch"] or time.time()
    seconds = max(end - t0, 1e-6)
    return {
        "requests": sent,
        "runs": state["created"],
        "completed": state["completed"],
        "not_completed": state["created"] - state["completed"],
        "seconds": round(seconds, 3),
        "runs_per_second": round(state["completed"] / seconds, 1),
        "created_to_started": summary_ms(runs.start_latencies(after)),
        "cpu_ms_per_run": {
            k: round(v * 1000 / max(state["completed"], 1), 3) for k, v in cpu.items()
        },
    }


def fixed_rate(runs: Runs, dep: Deployment, pool: Any, rate: float, opts: Any) -> dict[str, Any]:
    after = runs.last_id()
    load = Load(dep.port, dep.key, runs.task_id, opts.conns, rate=rate, seconds=opts.rate_seconds)
    sent = run_load(pool, load)
    state = runs.wait_ended(after, sent["accepted"], opts.stall)
    return {
        "rate": round(rate, 1),
        "requests": sent,
        "runs": state["created"],
        "not_completed": state["created"] - state["completed"],
        "created_to_started": summary_ms(runs.start_latencies(after)),
    }


def overload(runs: Runs, dep: Deployment, rate: float, opts: Any) -> dict[str, Any]:
    """Fire ``rate`` runs/s from every-second schedules (``rate`` tasks; the scheduler
    creates runs far faster than the API accepts triggers) for ``opts.overload_seconds``,
    sampling backlog and broker depth each second; pause them all, then time the drain."""
    after = runs.last_id()
    count = max(1, round(rate))
    tasks = [
        create_task(dep, f"bench-every-second-{i}", "* * * * * *", opts.executor, status="paused")
        for i in range(count)
    ]
    samples: list[dict[str, Any]] = []
    # Started (and below stopped) in one statement each, so that the load lasts what it
    # should: through an API saturated by the load, hundreds of calls take seconds, and
    # each second of them fires every task already active.
    with runs.db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE tasks SET status = 'active', paused_at = NULL,"
                " next_run_at = date_trunc('second', now())"
                " + interval '1 second' WHERE id = ANY(:ids)"
            ),
            {"ids": tasks},
        )
    started = time.monotonic()

    def sample() -> dict[str, Any]:
        state = runs.state(after)
        try:
            depth = broker_depth(dep.broker, dep.task_type, dep.namespace)
        except Exception:  # a busy broker may not answer at once: a gap, not a crash
            depth = -1
        samples.append(
            {
                "t": round(time.monotonic() - started, 1),
                "pending": state["pending"],
                "broker_messages": depth,
                "oldest_pending_s": state["oldest_pending_s"],
                "created": state["created"],
                "ended": state["ended"],
            }
        )
        return state

    while time.monotonic() - started < opts.overload_seconds:
        sample()
        time.sleep(1.0)
    with runs.db.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE tasks SET status = 'paused', next_run_at = NULL WHERE id = ANY(:ids)"),
            {"ids": tasks},
        )
    load_end = time.monotonic()
    at_stop = sample()
    first = samples[0]
    during = max(load_end - started, 1e-6)
    offered = (at_stop["created"] - first["created"]) / during
    completed = (at_stop["ended"] - first["ended"]) / during
    while True:
        time.sleep(1.0)
        state = sample()
        if state["pending"] == 0 or time.monotonic() - load_end > opts.drain_timeout:
            break
    drained = time.monotonic() - load_end
    excess = [s["broker_messages"] - s["pending"] for s in samples if s["broker_messages"] >= 0]
    return {
        "tasks": count,
        "offered_runs_per_second": round(offered, 1),
        "completed_runs_per_second_under_load": round(completed, 1),
        "backlog_at_stop": at_stop["pending"],
        "drain_seconds": round(drained, 1),
        "drain_runs_per_second": round((state["ended"] - at_stop["ended"]) / max(drained, 1e-6), 1),
        "not_drained": state["pending"],
        "max_pending": max(s["pending"] for s in samples),
        "max_broker_messages": max(s["broker_messages"] for s in samples),
        "worst_excess_messages": max(excess) if excess else None,
        "samples": samples,
    }


def ours(broker: str, pool: Any, opts: Any) -> dict[str, Any]:
    with (
        scratch_database("postgresql") as db,
        tempfile.TemporaryDirectory() as home,
        deployment(url_of(db), broker, Path(home), opts) as dep,
    ):
        runs = Runs(db, create_task(dep, executor=opts.executor), dep.task_type)
        warm = runs.last_id()
        run_load(pool, Load(dep.port, dep.key, runs.task_id, 8, count=50))
        runs.wait_ended(warm, 50, opts.stall)
        result: dict[str, Any] = {"throughput": throughput(dep, runs, pool, opts)}
        measured = result["throughput"]["runs_per_second"]
        rate = opts.rate or max(1.0, measured / 2)
        result["latency"] = fixed_rate(runs, dep, pool, rate, opts)
        if opts.overload:
            rate = opts.overload_tasks or max(2.0, measured * 2)
            result["overload"] = overload(runs, dep, rate, opts)
        return result


def celery(broker: str, rate: float, opts: Any) -> dict[str, Any]:
    from bench import celery_peer  # imports celery: only when it is installed

    with (
        tempfile.TemporaryDirectory() as home,
        celery_peer.celery_workers(broker, opts.workers, opts.concurrency, Path(home)) as app,
    ):
        results, t0 = celery_peer.send_burst(app, opts.runs)
        done = celery_peer.collect(results, opts.timeout)
        seconds = max((max(f for _, _, f in done) if done else time.time()) - t0, 1e-6)
        burst = {
            "runs": opts.runs,
            "completed": len(done),
            "not_completed": opts.runs - len(done),
            "seconds": round(seconds, 3),
            "runs_per_second": round(len(done) / seconds, 1),
            "created_to_started": summary_ms([s - c for c, s, _ in done]),
        }
        steady = celery_peer.collect(
            celery_peer.send_at_rate(app, rate, opts.rate_seconds), opts.timeout
        )
        latency = {
            "rate": round(rate, 1),
            "runs": int(rate * opts.rate_seconds),
            "not_completed": int(rate * opts.rate_seconds) - len(steady),
            "created_to_started": summary_ms([s - c for c, s, _ in steady]),
        }
        return {"throughput": burst, "latency": latency}


def celery_installed() -> bool:
    return importlib.util.find_spec("celery") is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="triggers in the burst")
    parser.add_argument("--broker", choices=["rabbitmq", "redis", "both"], default="rabbitmq")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--executor",
        choices=sorted(NO_OP),
        default="shell",
        help="what the runs are: shell `true` or the function os:getpid (no Celery peer)",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="runs at once per worker")
    parser.add_argument("--conns", type=int, default=32, help="HTTP connections for triggers")
    parser.add_argument(
        "--api-processes", type=int, default=1, help="API processes (api.processes)"
    )
    parser.add_argument("--rate", type=float, default=0.0, help="latency phase rate (0: half)")
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument("--overload", action="store_true", help="also the overload phase")
    parser.add_argument("--overload-seconds", type=float, default=20.0)
    parser.add_argument(
        "--overload-tasks",
        type=int,
        default=0,
        help="every-second tasks in the overload (0: twice the measured throughput)",
    )
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--redispatch-after", type=float, default=5.0)
    parser.add_argument("--stall", type=float, default=30.0, help="give up after no progress")
    parser.add_argument("--timeout", type=float, default=300.0, help="Celery result wait")
    parser.add_argument("--no-celery", action="store_true", help="skip Celery")
    parser.add_argument("--log-level", default="info", help="the daemons' log level")
    opts = parser.parse_args()

    brokers = ["rabbitmq", "redis"] if opts.broker == "both" else [opts.broker]
    # Celery's peer task is a shell `true`; for function runs there is no like-for-like.
    with_celery = not opts.no_celery and opts.executor == "shell" and celery_installed()
    if not opts.no_celery and not with_celery:
        print("celery is not installed (pip install '.[bench]'): ours only", file=sys.stderr)
    results: dict[str, Any] = {"options": vars(opts), "brokers": {}}
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        for broker in brokers:
            entry: dict[str, Any] = {"sched": ours(broker, pool, opts)}
            if with_celery:
                rate = entry["sched"]["latency"]["rate"]
                try:
                    entry["celery"] = celery(broker, rate, opts)
                except Exception as exc:  # reported, never a crash: ours stands
                    entry["celery_error"] = f"{type(exc).__name__}: {exc}"[:2000]
                    print(f"celery on {broker}: not measured: {entry['celery_error']}")
            results["brokers"][broker] = entry
            print(render(broker, entry), flush=True)
    print(f"written to {write_result('e2e', results)}")


def render(broker: str, entry: dict[str, Any]) -> str:
    rows = []
    for name in ("sched", "celery"):
        if name not in entry:
            continue
        burst, steady = entry[name]["throughput"], entry[name]["latency"]
        rows.append(
            [
                name,
                burst["runs_per_second"],
                burst["not_completed"],
                burst["created_to_started"]["p50_ms"],
                burst["created_to_started"]["p99_ms"],
                steady["rate"],
                steady["created_to_started"]["p50_ms"],
                steady["created_to_started"]["p99_ms"],
                steady["not_completed"],
            ]
        )
    headers = ["system", "runs/s", "unfinished", "burst p50", "burst p99"]
    headers += ["rate/s", "c->s p50 ms", "c->s p99 ms", "unfinished@rate"]
    text = [f"PostgreSQL + {broker}, shell `true`, 2 workers", table(headers, rows)]
    if "celery" in entry:
        ratio = entry["sched"]["throughput"]["runs_per_second"] / max(
            entry["celery"]["throughput"]["runs_per_second"], 1e-9
        )
        entry["ratio"] = round(ratio, 2)
        text.append(f"throughput ratio sched/celery: {ratio:.2f}x")
    cpu = entry["sched"]["throughput"]["cpu_ms_per_run"]
    text.append("CPU ms per run: " + ", ".join(f"{k} {v}" for k, v in cpu.items()))
    if "overload" in entry["sched"]:
        o = entry["sched"]["overload"]
        text.append(
            f"overload, {o['tasks']} every-second tasks: {o['offered_runs_per_second']} runs/s "
            f"offered, {o['completed_runs_per_second_under_load']} completed; backlog "
            f"{o['backlog_at_stop']} at stop (max {o['max_pending']}), broker messages max "
            f"{o['max_broker_messages']} (worst excess over pending "
            f"{o['worst_excess_messages']}); drained in {o['drain_seconds']} s at "
            f"{o['drain_runs_per_second']} runs/s, {o['not_drained']} not drained"
        )
    return "\n".join(text)


if __name__ == "__main__":
    main()
