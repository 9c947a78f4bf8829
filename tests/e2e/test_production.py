"""A production deployment as the README and the units in etc/ describe it.

Separate `schedd run --role api`, `--role scheduler` and two `--role worker` processes,
started with the command lines of the systemd units (their ExecStart and Environment
lines) and `etc/schedd.production.toml`, over PostgreSQL and RabbitMQ, with the
secrets in the environment as `/etc/schedd/schedd.env` would give them. The first API
key is made as the README says (`schedctl --db ... apikey create`); everything else
goes through `schedctl` over HTTP.

Checked: a task firing every 2 s completes at least twice with its output and fires
each scheduled time once; `task trigger --wait` exits 0; a worker killed with SIGKILL
in the middle of a run leaves no process behind, its run is lost and the retry
completes on the other worker, each execution counted once; SIGTERM stops every
process with exit 0 and nothing left running; every log line is JSON.

Only the timing settings are shortened (heartbeats every second, offline after 8 s)
so that the SIGKILL is noticed in seconds instead of 90.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import psutil
import pytest

from tests.proc import isolated_env, wait_until
from tests.schedctlserver import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOSTNAME = "prod-host"

pytestmark = [pytest.mark.slow, pytest.mark.external_service]


def unit_command(unit: str, config: Path, instance: str = "") -> tuple[list[str], dict[str, str]]:
    """The ExecStart of ``etc/<unit>`` as argv (this venv's schedd, ``config`` for the
    config path) and its Environment= settings, with %H and %i expanded."""
    text = (ROOT / "etc" / unit).read_text()
    (exec_start,) = re.findall(r"^ExecStart=(.+)$", text, re.MULTILINE)
    argv = exec_start.split()
    assert argv[0].endswith("/schedd") and "/etc/schedd/schedd.toml" in argv
    argv = [str(BIN / "schedd")] + [
        str(config) if a == "/etc/schedd/schedd.toml" else a for a in argv[1:]
    ]
    env = {}
    for assignment in re.findall(r"^Environment=(.+)$", text, re.MULTILINE):
        key, _, value = assignment.partition("=")
        env[key] = value.replace("%H", HOSTNAME).replace("%i", instance)
    return argv, env


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


@dataclass
class Deployment:
    config: Path
    base_env: dict[str, str]  # what /etc/schedd/schedd.env and the test's timings give
    work: Path
    task_type: str
    procs: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    cli_env: dict[str, str] = field(default_factory=dict)

    def start(self, name: str, unit: str, instance: str = "") -> None:
        argv, unit_env = unit_command(unit, self.config, instance)
        self.logs[name] = self.work / f"{name}.log"
        with self.logs[name].open("w") as out:
            self.procs[name] = subprocess.Popen(
                argv,
                env={**self.base_env, **unit_env},
                cwd=self.work,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )

    def schedctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "schedctl"), *args],
            env=self.cli_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def json(self, *args: str) -> Any:
        done = self.schedctl("-o", "json", *args)
        assert done.returncode == 0, f"schedctl {' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout)

    def runs(self, task: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.json("run", "list", "--task", task, "--size", "500")[
            "items"
        ]
        return items

    def log_text(self, name: str) -> str:
        return self.logs[name].read_text()


@pytest.fixture
def deployment(empty_pg_url: str, rabbitmq_url: str, tmp_path: Path) -> Iterator[Deployment]:
    home = tmp_path / "home"
    state = tmp_path / "state"  # what StateDirectory=sched gives the units
    home.mkdir()
    state.mkdir()
    config = tmp_path / "schedd.toml"
    config.write_text((ROOT / "etc" / "schedd.production.toml").read_text())
    task_type = f"prod{uuid.uuid4().hex[:8]}"  # its own RabbitMQ queue
    port = free_port()
    secrets_env = {  # /etc/schedd/schedd.env
        "DATABASE_URL": empty_pg_url,
        "RABBITMQ_URL": rabbitmq_url,
        "JWT_SECRET": secrets.token_urlsafe(32),
    }
    test_env = {
        # Where this host differs from the production file: no /var/lib/sched, a free
        # port, and the queue of this test only.
        "SCHEDD_DAEMON__DATA_DIR": str(state),
        "SCHEDD_WORKER__WORKING_DIRECTORY": str(state),
        "SCHEDD_WORKER__PYTHON_INTERPRETER": sys.executable,
        "SCHEDD_WORKER__TASK_TYPES": task_type,
        "API_PORT": str(port),
        # Short timings: offline 8 s after the last heartbeat instead of 90 (with room
        # for a loaded CI machine: a live worker must not be taken for dead).
        "SCHEDD_WORKER__HEARTBEAT_INTERVAL": "1",
        "SCHEDD_WORKER__FENCE_SECONDS": "5",
        "SCHEDD_SCHEDULER__HEARTBEAT_TIMEOUT": "8",
        "SCHEDD_SCHEDULER__REAP_INTERVAL": "1",
        "SCHEDD_SCHEDULER__REDISPATCH_AFTER": "5",
        "SCHEDD_WORKER__DRAIN_GRACE_SECONDS": "10",
        "SCHEDD_WORKER__KILL_GRACE_SECONDS": "2",
    }
    base_env = isolated_env(home, {**secrets_env, **test_env})
    dep = Deployment(config=config, base_env=base_env, work=tmp_path, task_type=task_type)

    migrated = subprocess.run(
        [str(BIN / "schedd"), "migrate", "--config", str(config)],
        env=base_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stderr
    try:
        dep.start("api", "schedd-api.service")
        dep.start("scheduler", "schedd-scheduler.service")
        dep.start("worker1", "schedd-worker@.service", "1")
        dep.start("worker2", "schedd-worker@.service", "2")

        # The README's first key, straight on the database.
        created = subprocess.run(
            [str(BIN / "schedctl"), "--db", empty_pg_url, "-o", "json", "apikey", "create"]
            + ["ops", "--scope", "all"],
            env=isolated_env(home),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert created.returncode == 0, created.stderr
        dep.cli_env = isolated_env(
            home,
            {
                "SCHED_API": f"http://127.0.0.1:{port}",
                "SCHED_TOKEN": json.loads(created.stdout)["key"],
            },
        )

        def serving() -> bool:
            for name, proc in dep.procs.items():
                assert proc.poll() is None, f"{name} exited: {dep.log_text(name)}"
            health = dep.schedctl("-o", "json", "system", "health")
            return health.returncode == 0

        assert wait_until(serving, 60, interval=0.5), "the API did not come up"

        def both_workers_online() -> bool:
            workers = dep.json("worker", "list")["items"]
            return {w["id"] for w in workers if w["status"] == "active"} >= {
                f"{HOSTNAME}-1",
                f"{HOSTNAME}-2",
            }

        assert wait_until(both_workers_online, 60, interval=0.5), dep.json("worker", "list")
        yield dep
    finally:
        for proc in dep.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        delete_queue(rabbitmq_url, f"sched.runs.{task_type}")


def delete_queue(url: str, queue: str) -> None:
    """Remove the test's durable queue (the daemon's default namespace is ``sched``)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().queue_delete(queue)
    finally:
        connection.close()


def test_a_production_deployment_runs_tasks_and_survives_a_killed_worker(
    deployment: Deployment,
) -> None:
    dep = deployment
    ttype = dep.task_type
    created = dep.schedctl(
        "task", "create", "tick", "echo tick $1", "--arg", "ok", "--task-type", ttype,
        "--schedule", "*/2 * * * * *",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr

    def completed_ticks() -> list[dict[str, Any]]:
        return [r for r in dep.runs("tick") if r["status"] == "completed"]

    assert wait_until(lambda: len(completed_ticks()) >= 2, 30, interval=0.5), dep.runs("tick")
    for run in completed_ticks()[:2]:
        logs = dep.schedctl("run", "logs", str(run["id"]))
        assert logs.returncode == 0 and logs.stdout == "tick ok\n", logs

    triggered = dep.schedctl("task", "trigger", "tick", "--wait", "--timeout", "60")
    assert triggered.returncode == 0, triggered.stderr

    # A run in the middle of its work when its worker is killed.
    executions = dep.work / "executions.log"
    slow = dep.schedctl(
        "task", "create", "slow",
        f'echo "$SCHED_RUN_ID" >> {executions}; echo started; sleep 6; echo finished',
        "--task-type", ttype, "--retries", "1", "--retry-delay", "0",
    )  # fmt: skip
    assert slow.returncode == 0, slow.stderr
    first = dep.json("task", "trigger", "slow")
    first_id = first["id"]

    def started() -> bool:
        run = dep.json("run", "show", str(first_id))
        return run["status"] == "running" and executions.exists()

    assert wait_until(started, 30, interval=0.2), dep.json("run", "show", str(first_id))
    victim_id = dep.json("run", "show", str(first_id))["worker_id"]
    victim_name = {f"{HOSTNAME}-1": "worker1", f"{HOSTNAME}-2": "worker2"}[victim_id]
    survivor_id = ({f"{HOSTNAME}-1", f"{HOSTNAME}-2"} - {victim_id}).pop()
    victim = dep.procs[victim_name]

    def sleeping() -> bool:  # the shell forks sleep just after it wrote the log line
        found = psutil.Process(victim.pid).children(recursive=True)
        descendants[:] = found
        return any("sleep" in " ".join(_cmdline(p)) for p in found)

    descendants: list[psutil.Process] = []
    assert wait_until(sleeping, 10, interval=0.1), "no task running"
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    _, alive = psutil.wait_procs(descendants, timeout=10)
    assert alive == [], f"the killed worker's task processes live on: {alive}"

    def retried() -> dict[str, Any] | None:
        for run in dep.runs("slow"):
            if run["parent_run_id"] == first_id and run["status"] == "completed":
                return run
        return None

    assert wait_until(lambda: retried() is not None, 60, interval=0.5), dep.runs("slow")
    retry = retried()
    assert retry is not None
    assert retry["worker_id"] == survivor_id
    assert dep.json("run", "show", str(first_id))["status"] == "lost"
    logs = dep.schedctl("run", "logs", str(retry["id"]))
    assert logs.stdout == "started\nfinished\n", logs
    counted = executions.read_text().split()
    assert sorted(counted) == sorted([str(first_id), str(retry["id"])]), counted
    assert len(dep.runs("slow")) == 2  # no third run: nothing executed twice

    # Each scheduled time fired once.
    fired = [r["scheduled_for"] for r in dep.runs("tick") if r["trigger"] == "schedule"]
    assert len(fired) == len(set(fired)), fired

    # The troubleshooting view: each process stored its events, with their refs.
    def events(*args: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = dep.json("system", "logs", "--size", "500", *args)["items"]
        return found

    def has_events() -> bool:
        warnings = [e["message"] for e in events("--level", "warning")]
        return any(f"worker {victim_id} is offline" in m for m in warnings) and any(
            f"run {first_id} (task" in m and "is lost" in m for m in warnings
        )

    assert wait_until(has_events, 10, interval=0.5), events("--level", "warning")
    fires = [e for e in events("--component", "scheduler") if "fired for" in e["message"]]
    assert fires and all(e["refs"].get("task_id") for e in fires), fires
    outcomes = [
        e for e in events("--component", "worker") if e["refs"].get("run_id") == retry["id"]
    ]
    assert outcomes and outcomes[-1]["level"] == "info", outcomes
    assert "completed" in outcomes[-1]["message"], outcomes

    # SIGTERM: every process exits 0, nothing left running.
    running = [p for name, p in dep.procs.items() if name != victim_name]
    children = [c for p in running for c in psutil.Process(p.pid).children(recursive=True)]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    for name, proc in dep.procs.items():
        if name == victim_name:
            continue
        proc.wait(60)
        assert proc.returncode == 0, f"{name} exited {proc.returncode}: {dep.log_text(name)}"
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left running after SIGTERM: {alive}"

    # JSON logs (log_format = "json" in the production file), no traceback, no secret.
    for name in dep.procs:
        text = dep.log_text(name)
        assert "Traceback" not in text, text
        assert dep.base_env["JWT_SECRET"] not in text
        for line in text.splitlines():
            record = json.loads(line)
            assert {"time", "level", "logger", "message"} <= record.keys(), line
