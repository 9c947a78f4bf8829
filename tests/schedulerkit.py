"""Real `schedd run --role scheduler` processes on one database, and the every-second
tasks the scheduler fault tests fire and count (tests/fault/test_scheduler_*.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from schedd.db import Database
from schedd.models import Task, TaskRun
from schedd.types import utcnow


class Schedulers:
    """Scheduler subprocesses sharing one database, each logging to its own file."""

    def __init__(self, url: str, home: Path, **settings: str) -> None:
        self.url = url
        self.home = home
        self.settings = settings
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.logs: list[Path] = []

    def env(self) -> dict[str, str]:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SCHEDD_", "DATABASE_", "XDG_")) and k not in ("LOG_LEVEL",)
        }
        base.update(
            HOME=str(self.home),
            XDG_DATA_HOME=str(self.home / "data"),
            XDG_CONFIG_HOME=str(self.home / "config"),
            DATABASE_URL=self.url,
            SCHEDD_MESSAGE_QUEUE__TYPE="database",
            SCHEDD_SCHEDULER__SCHEDULING_INTERVAL="0.5",
        )
        base.update({f"SCHEDD_SCHEDULER__{k.upper()}": v for k, v in self.settings.items()})
        return base

    def start(self, index: int, **extra_env: str) -> None:
        self.launch(index, **extra_env)
        self.wait_started(index)

    def launch(self, index: int, **extra_env: str) -> None:
        """Start scheduler ``index`` without waiting for it to be up."""
        log = self.home / f"scheduler-{index}-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.procs[index] = subprocess.Popen(
                [sys.executable, "-m", "schedd", "run", "--role", "scheduler"],
                env={**self.env(), **extra_env},
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.home,
            )

    def wait_started(self, index: int) -> None:
        log = next(p for p in reversed(self.logs) if p.name.startswith(f"scheduler-{index}-"))
        deadline = time.monotonic() + 30
        while b"role scheduler started" not in log.read_bytes():
            assert self.procs[index].poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"scheduler {index} did not start"
            time.sleep(0.05)

    def kill(self, index: int) -> None:
        proc = self.procs.pop(index)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self, index: int) -> int:
        proc = self.procs.pop(index)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(20)

    def stop_all(self) -> list[int]:
        return [self.stop(i) for i in list(self.procs)]

    def close(self) -> None:
        """Kill what is still running (woken first if a test left it stopped)."""
        for proc in self.procs.values():
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait(10)

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs)


def round_second(seconds_ahead: float) -> datetime:
    moment = utcnow() + timedelta(seconds=seconds_ahead)
    return moment.replace(microsecond=0) + timedelta(seconds=1)


def insert_tasks(db: Database, t0: datetime, policies: list[str]) -> dict[int, str]:
    """Tasks firing every second from ``t0``, one per policy in ``policies``."""
    rows = [
        {
            "name": f"tick-{i}",
            "description": "",
            "task_type": "shell",
            "executor": "shell",
            "command": "true",
            "arguments": [],
            "schedule": "* * * * * *",
            "timezone": "UTC",
            "priority": "normal",
            "retry_count": 0,
            "retry_delay_seconds": 1.0,
            "status": "active",
            "concurrency_policy": "allow",
            "misfire_policy": policy,
            "tags": [],
            "metadata_": {},
            "created_at": utcnow(),
            "updated_at": utcnow(),
            "next_run_at": t0,
        }
        for i, policy in enumerate(policies)
    ]
    with db.session() as s:
        s.execute(sa.insert(Task), rows)
        return {
            task_id: policy
            for task_id, policy in s.execute(sa.select(Task.id, Task.misfire_policy))
        }


def wait_until_fired_through(db: Database, last: datetime, timeout: float) -> None:
    """Wait until every task's next fire is after ``last`` (so ``last`` has fired)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as s:
            earliest = s.execute(sa.select(sa.func.min(Task.next_run_at))).scalar_one()
        if earliest is not None and earliest > last:
            return
        time.sleep(0.2)
    raise AssertionError(f"tasks did not fire through {last.isoformat()} in {timeout}s")


def pause_all(db: Database) -> None:
    with db.session() as s:
        s.execute(sa.update(Task).values(status="paused", next_run_at=None))


def fired(db: Database) -> dict[int, list[tuple[datetime, datetime]]]:
    """task id -> [(scheduled_for, created_at)] of its runs, by scheduled time."""
    found: dict[int, list[tuple[datetime, datetime]]] = defaultdict(list)
    with db.session() as s:
        rows = s.execute(
            sa.select(TaskRun.task_id, TaskRun.scheduled_for, TaskRun.created_at, TaskRun.trigger)
        ).all()
    for task_id, scheduled_for, created_at, trigger in rows:
        assert trigger == "schedule"
        found[task_id].append((scheduled_for, created_at))
    for runs in found.values():
        runs.sort()
    return found
