"""Soak: a real deployment under steady load and a random fault every N seconds.

``python -m bench.soak --minutes 10 --broker rabbitmq`` starts, on a scratch PostgreSQL
database, one API, two schedulers and two workers (each its own `schedd run` process),
creates ``--tasks`` tasks firing every second and one manual task triggered through
the API every ``--trigger-every`` seconds, and every ``--fault-every`` seconds does one
fault picked at random from ``--faults``:

- ``kill-worker`` / ``kill-scheduler`` / ``kill-api``: SIGKILL, restarted after 1 s;
- ``stop-worker`` / ``stop-scheduler``: SIGSTOP for ``--stop-seconds``, then SIGCONT;
- ``broker-restart``: RabbitMQ ``stop_app``/``start_app``, or a Redis restart (it
  disturbs anything else on that broker: leave it out on a shared machine);
- ``terminate-backends``: ``pg_terminate_backend`` of every connection to the
  deployment's database.

Every task's command ends by appending ``<task> <scheduled_for> <run> <attempt>`` to
a ledger, so executions are counted, not inferred from statuses. When the time is up
the faults stop, the schedules are paused, and the runs are given ``--drain`` seconds
to end. Printed (table and JSON, also written to bench/results/):

- fired: scheduled runs (first attempts) of the soak's seconds; triggered: 202s;
- completed: those whose run, or a retry of it, completed;
- lost: those with no completed attempt once everything ended;
- duplicated: those the ledger shows executed more than once, split into
  ``duplicated_after_lost`` (an attempt was declared lost although its command had
  ended: its worker was killed, or frozen past the heartbeat timeout, before the
  outcome reached the database or its guard; the guard closes all but a few
  milliseconds of that window, so this should be 0) and ``double_runs`` (any other: a
  bug);
- stuck: runs still pending/running/waiting after the drain;
- missing seconds: (task, second) pairs in the soak with no run at all, and
  duplicate seconds (two runs for one pair);
- each process's RSS at start and end (the end is its last incarnation's).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import sqlalchemy as sa

from bench.common import scratch_database, table, url_of, write_result
from bench.deployment import (
    admin_key,
    broker_depth,
    free_port,
    spawn,
    wait_healthy,
    write_config,
)
from schedd.configsections import default_namespace
from schedd.db import Database
from schedd.models import Task, TaskRun

FAULTS = (
    "kill-worker",
    "kill-scheduler",
    "kill-api",
    "stop-worker",
    "stop-scheduler",
    "broker-restart",
    "terminate-backends",
)
ENDED = ("completed", "failed", "timeout", "lost", "cancelled", "skipped")
RESTART_DELAY = 1.0


@dataclass
class Proc:
    """One role process of the deployment, across its restarts."""

    name: str
    role: str
    popen: subprocess.Popen[bytes]
    rss_start_mb: float = float("nan")
    restarts: int = 0
    stopped: bool = False

    def rss_mb(self) -> float:
        try:
            return round(psutil.Process(self.popen.pid).memory_info().rss / 2**20, 1)
        except psutil.Error:
            return float("nan")


@dataclass
class Soak:
    opts: argparse.Namespace
    db: Database
    home: Path
    config: Path
    base: str
    procs: dict[str, Proc] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    fault_log: list[str] = field(default_factory=list)
    triggered: list[int] = field(default_factory=list)
    trigger_errors: int = 0
    key: str = ""

    def start(self, name: str, role: str) -> None:
        incarnation = self.procs[name].restarts + 1 if name in self.procs else 0
        popen = spawn(self.config, role, self.home, f"{name}.{incarnation}")
        if name in self.procs:
            self.procs[name].popen = popen
            self.procs[name].restarts += 1
        else:
            self.procs[name] = Proc(name, role, popen)

    def running(self) -> dict[str, subprocess.Popen[bytes]]:
        return {f"{p.name}.{p.restarts}": p.popen for p in self.procs.values()}

    # --- faults ----------------------------------------------------------------------

    def pick(self, role: str) -> Proc:
        return random.choice([p for p in self.procs.values() if p.role == role])

    def kill(self, role: str) -> str:
        proc = self.pick(role)
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(30)
        time.sleep(RESTART_DELAY)
        self.start(proc.name, role)
        return proc.name

    def stop(self, role: str) -> str:
        proc = self.pick(role)
        proc.popen.send_signal(signal.SIGSTOP)
        time.sleep(self.opts.stop_seconds)
        proc.popen.send_signal(signal.SIGCONT)
        return proc.name

    def broker_restart(self) -> str:
        if self.opts.broker == "rabbitmq":
            subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=60)
            time.sleep(2)
            subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=120)
            subprocess.run(["rabbitmqctl", "-q", "await_startup"], check=True, timeout=120)
            return "rabbitmq"
        subprocess.run(["redis-cli", "shutdown", "nosave"], check=False, timeout=30)
        time.sleep(2)
        subprocess.run(
            ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
             "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis"],
            check=True, timeout=30,
        )  # fmt: skip
        return "redis"

    def terminate_backends(self) -> str:
        with self.db.engine.connect() as conn:
            ended = conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
            conn.commit()
        return f"{ended} sessions"

    def fault(self, kind: str) -> None:
        started = time.monotonic()
        if kind.startswith("kill-"):
            what = self.kill(kind.removeprefix("kill-"))
        elif kind.startswith("stop-"):
            what = self.stop(kind.removeprefix("stop-"))
        elif kind == "broker-restart":
            what = self.broker_restart()
        else:
            what = self.terminate_backends()
        self.faults[kind] += 1
        line = f"{datetime.now(UTC):%H:%M:%S} {kind} {what} ({time.monotonic() - started:.1f}s)"
        self.fault_log.append(line)
        print("  fault:", line, flush=True)

    # --- load --------------------------------------------------------------------------

    def trigger_loop(self, task_id: int, until: float, stop: threading.Event) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.base, headers=headers, timeout=10) as client:
            while time.monotonic() < until and not stop.is_set():
                try:
                    response = client.post(f"/api/tasks/{task_id}/trigger", json={})
                    if response.status_code == 202:
                        self.triggered.append(int(response.json()["id"]))
                    else:
                        self.trigger_errors += 1
                except httpx.HTTPError:
                    self.trigger_errors += 1  # the API is down: a client would retry
                stop.wait(self.opts.trigger_every)


def create_tasks(db: Database, ledger: Path, task_type: str, count: int) -> tuple[list[int], int]:
    fields = "$SCHED_TASK_ID $SCHED_SCHEDULED_FOR $SCHED_RUN_ID $SCHED_ATTEMPT"
    command = f'sleep 0.2; echo "{fields}" >> {ledger}'
    common = {
        "task_type": task_type,
        "executor": "shell",
        "command": command,
        "retry_count": 5,
        "retry_delay_seconds": 1.0,
        "timeout_seconds": 60,
    }
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    with db.session() as session:
        scheduled = [
            Task(name=f"soak-{i}", schedule="* * * * * *", next_run_at=first, **common)
            for i in range(count)
        ]
        manual = Task(name="soak-trigger", **common)
        session.add_all([*scheduled, manual])
        session.flush()
        return [int(t.id or 0) for t in scheduled], int(manual.id or 0)


def wait_drained(db: Database, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        with db.session() as session:
            open_runs = session.execute(
                sa.select(sa.func.count()).where(sa.not_(TaskRun.status.in_(ENDED)))  # type: ignore[attr-defined]
            ).scalar_one()
        if open_runs == 0 or time.monotonic() > deadline:
            return int(open_runs)
        time.sleep(1)


def measure(
    db: Database, ledger: Path, scheduled: list[int], triggered: list[int], window: tuple[Any, Any]
) -> dict[str, Any]:
    with db.session() as session:
        rows = session.execute(
            sa.select(
                TaskRun.id, TaskRun.task_id, TaskRun.status, TaskRun.scheduled_for,
                TaskRun.trigger, TaskRun.parent_run_id,
            )
        ).all()  # fmt: skip
    parent = {r.id: r.parent_run_id for r in rows}

    def root(run_id: int) -> int:
        while parent.get(run_id) is not None:
            run_id = parent[run_id]  # type: ignore[assignment]
        return run_id

    completed_roots = {root(r.id) for r in rows if r.status == "completed"}
    stuck = sum(1 for r in rows if r.status not in ENDED)
    start, end = window
    firsts = [r for r in rows if r.trigger == "schedule" and r.task_id in set(scheduled)]
    soak_firsts = [r for r in firsts if start <= r.scheduled_for <= end]
    seconds = Counter((r.task_id, r.scheduled_for) for r in soak_firsts)
    expected_seconds = int((end - start).total_seconds()) + 1
    missing = sum(
        1
        for task_id in scheduled
        for s in range(expected_seconds)
        if (task_id, start + timedelta(seconds=s)) not in seconds
    )
    executions: Counter[int] = Counter()
    for line in ledger.read_text().splitlines() if ledger.exists() else []:
        parts = line.split()
        if len(parts) >= 3:
            executions[root(int(parts[2]))] += 1
    roots = [r.id for r in soak_firsts] + triggered
    # A run whose command ended but whose outcome reached neither the database nor the
    # worker's guard before the worker was killed or frozen past the heartbeat timeout
    # was declared lost and ran again. Any other second execution is a double run.
    lost_roots = {root(r.id) for r in rows if r.status == "lost"}
    duplicated = [r for r in roots if executions[r] > 1]
    return {
        "fired": len(soak_firsts),
        "triggered": len(triggered),
        "completed": sum(1 for r in roots if r in completed_roots),
        "lost": sum(1 for r in roots if r not in completed_roots),
        "duplicated": len(duplicated),
        "duplicated_after_lost": sum(1 for r in duplicated if r in lost_roots),
        "double_runs": sum(1 for r in duplicated if r not in lost_roots),
        "stuck": stuck,
        "missing_seconds": missing,
        "duplicate_seconds": sum(1 for n in seconds.values() if n > 1),
        "expected_seconds": expected_seconds * len(scheduled),
        "retries": sum(1 for r in rows if r.trigger == "retry"),
        "lost_attempts": sum(1 for r in rows if r.status == "lost"),
    }


def soak(opts: argparse.Namespace) -> dict[str, Any]:
    with ExitStack() as stack:
        db = stack.enter_context(scratch_database("postgresql", max_connections=4))
        if opts.keep:
            home = Path(tempfile.mkdtemp(prefix="sched-soak-"))
            print(f"logs and ledger kept in {home}")
        else:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sched-soak-")))
        database_url = url_of(db)
        task_type = f"soak-{os.urandom(4).hex()}"
        port = free_port()
        opts.concurrency, opts.executor, opts.redispatch_after = 32, "shell", 5.0
        config = write_config(
            home, database_url=database_url, broker=opts.broker, port=port,
            task_type=task_type, opts=opts,
        )  # fmt: skip
        run = Soak(opts, db, home, config, f"http://127.0.0.1:{port}")
        stack.callback(_stop_all, run)
        stack.callback(
            lambda: broker_depth(
                opts.broker, task_type, default_namespace(database_url), purge=True
            )
        )
        for name, role in (
            ("api", "api"), ("scheduler1", "scheduler"), ("scheduler2", "scheduler"),
            ("worker1", "worker"), ("worker2", "worker"),
        ):  # fmt: skip
            run.start(name, role)
        wait_healthy(run.base, run.running(), home)
        run.key = admin_key(database_url)
        time.sleep(2)
        for proc in run.procs.values():
            proc.rss_start_mb = proc.rss_mb()
        ledger = home / "ledger"
        scheduled, manual = create_tasks(db, ledger, task_type, opts.tasks)
        soak_start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
        until = time.monotonic() + opts.minutes * 60
        stop = threading.Event()
        trigger = threading.Thread(target=run.trigger_loop, args=(manual, until, stop))
        trigger.start()
        print(
            f"soak: {opts.minutes:g} min on PostgreSQL + {opts.broker}, {opts.tasks} every-second"
            f" tasks, a trigger every {opts.trigger_every:g}s, a fault every"
            f" {opts.fault_every:g}s from {', '.join(opts.faults)}",
            flush=True,
        )
        try:
            next_fault = time.monotonic() + opts.fault_every
            while time.monotonic() < until:
                time.sleep(min(1.0, max(0.0, until - time.monotonic())))
                if time.monotonic() >= next_fault and time.monotonic() < until:
                    run.fault(random.choice(opts.faults))
                    next_fault = time.monotonic() + opts.fault_every
                for proc in run.procs.values():  # a process that died by itself: say so
                    if proc.popen.poll() is not None:
                        print(f"  {proc.name} exited ({proc.popen.returncode}); restarting")
                        run.start(proc.name, proc.role)
        finally:
            stop.set()
            trigger.join(15)
        soak_end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2)
        # Let the last seconds fire, then stop the schedules and let every run end.
        time.sleep(3)
        with db.session() as session:
            session.execute(
                sa.update(Task).where(Task.id.in_(scheduled)).values(status="paused")  # type: ignore[union-attr]
            )
        stuck = wait_drained(db, opts.drain)
        figures = measure(db, ledger, scheduled, run.triggered, (soak_start, soak_end))
        figures["stuck"] = stuck
        figures["trigger_errors"] = run.trigger_errors
        processes = {
            p.name: {
                "rss_start_mb": p.rss_start_mb,
                "rss_end_mb": p.rss_mb(),
                "restarts": p.restarts,
            }
            for p in run.procs.values()
        }
        return {
            "settings": {
                "minutes": opts.minutes,
                "broker": opts.broker,
                "tasks": opts.tasks,
                "trigger_every": opts.trigger_every,
                "fault_every": opts.fault_every,
                "stop_seconds": opts.stop_seconds,
                "faults": opts.faults,
            },
            "figures": figures,
            "faults": dict(run.faults),
            "fault_log": run.fault_log,
            "processes": processes,
        }


def _stop_all(run: Soak) -> None:
    for proc in run.procs.values():
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGCONT)
            proc.popen.send_signal(signal.SIGTERM)
    for proc in run.procs.values():
        try:
            proc.popen.wait(30)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--broker", choices=["rabbitmq", "redis"], default="rabbitmq")
    parser.add_argument("--tasks", type=int, default=20, help="every-second tasks")
    parser.add_argument("--trigger-every", type=float, default=0.5, help="seconds")
    parser.add_argument("--fault-every", type=float, default=30.0, help="seconds")
    parser.add_argument("--stop-seconds", type=float, default=10.0, help="SIGSTOP length")
    parser.add_argument(
        "--faults",
        type=lambda text: [f for f in text.split(",") if f],
        default=list(FAULTS),
        help=f"comma-separated, from {','.join(FAULTS)}",
    )
    parser.add_argument("--drain", type=float, default=180.0, help="seconds for runs to end")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--log-level", default="info", help="the daemons' log level")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the logs and the ledger")
    opts = parser.parse_args()
    unknown = [f for f in opts.faults if f not in FAULTS]
    if unknown or not opts.faults:
        parser.error(f"unknown fault(s) {', '.join(unknown) or '(none given)'}")
    random.seed(opts.seed)
    result = soak(opts)
    figures = result["figures"]
    print()
    print(table(["figure", "value"], [[k, v] for k, v in figures.items()]))
    print()
    print(
        table(
            ["process", "RSS start MB", "RSS end MB", "restarts"],
            [
                [name, p["rss_start_mb"], p["rss_end_mb"], p["restarts"]]
                for name, p in result["processes"].items()
            ],
        )
    )
    print()
    print("faults:", ", ".join(f"{k} x{v}" for k, v in sorted(result["faults"].items())))
    path = write_result(f"soak-{opts.broker}", result)
    print(json.dumps(result["figures"] | {"processes": result["processes"]}))
    print(f"written to {path}")
    sys.exit(0 if all(figures[k] == 0 for k in BAD) else 1)


BAD = ("lost", "double_runs", "stuck", "missing_seconds", "duplicate_seconds")

if __name__ == "__main__":
    main()
