"""A real split deployment for the end-to-end benchmark: one process per role.

``schedd run --role api``, ``--role scheduler`` and N x ``--role worker``, each its own
`python -m schedd` process with one shared config file, on a scratch PostgreSQL
database and RabbitMQ or Redis. The bench's task has a task type of its own
(``bench-<random>``), so its queue or streams are its own and a parallel run on the
same broker measures nothing of ours, nor we of it.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import tomli_w

from schedd.configsections import default_namespace

ROOT = Path(__file__).resolve().parent.parent
BROKER_URLS = {
    "rabbitmq": os.environ.get("SCHED_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
    "redis": os.environ.get("SCHED_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
}
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(home: Path) -> dict[str, str]:
    """This environment without anything that configures schedd, plus the checkout on
    the import path (the bench runs from a plain checkout)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SCHEDD_", "SCHED_"))
        and k not in ("DATABASE_URL", "JWT_SECRET", "RABBITMQ_URL", "REDIS_URL", "API_PORT")
    }
    env["HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    # Workers run tasks as the bench's own user (a root worker must name one).
    env["SCHEDD_WORKER__RUN_AS"] = pwd.getpwuid(os.geteuid()).pw_name
    return env


@dataclass
class Deployment:
    """What the benchmark needs to drive and watch a running deployment."""

    broker: str
    task_type: str
    port: int
    key: str
    home: Path
    namespace: str = "sched"
    processes: dict[str, psutil.Process] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> dict[str, float]:
        """CPU (user + system) each role process and its children used so far."""
        used: dict[str, float] = {}
        for name, proc in self.processes.items():
            try:
                times = proc.cpu_times()
                used[name] = times.user + times.system + times.children_user
                used[name] += times.children_system
                if name == "api":  # its helper processes (api.processes)
                    for child in proc.children():
                        child_times = child.cpu_times()
                        used[name] += child_times.user + child_times.system
            except psutil.Error:
                used[name] = float("nan")
        return used


def write_config(
    home: Path, *, database_url: str, broker: str, port: int, task_type: str, opts: Any
) -> Path:
    config = {
        "database": {"url": database_url},
        "message_queue": {"type": broker, "url": BROKER_URLS[broker]},
        "api": {
            "host": "127.0.0.1",
            "port": port,
            "processes": getattr(opts, "api_processes", 1),
        },
        "scheduler": {"scheduling_interval": 1, "redispatch_after": opts.redispatch_after},
        "worker": {
            "max_concurrent_tasks": opts.concurrency,
            "heartbeat_interval": 2,
            "executor_types": [getattr(opts, "executor", "shell")],
            "task_types": [task_type],
            "working_directory": str(home),
        },
        "observability": {"log_level": opts.log_level},
        "auth": {"jwt_secret": "bench-" + uuid.uuid4().hex + uuid.uuid4().hex},
        "daemon": {"data_dir": str(home / "data")},
    }
    path = home / "schedd.toml"
    path.write_bytes(tomli_w.dumps(config).encode())
    return path


def spawn(config: Path, role: str, home: Path, name: str) -> subprocess.Popen[bytes]:
    env = child_env(home)
    if role == "worker":
        env["SCHEDD_WORKER__ID"] = f"bench-{name}"
    with open(home / f"{name}.log", "wb") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "schedd", "run", "--config", str(config), "--role", role],
            env=env,
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def admin_key(database_url: str) -> str:
    from schedd.db import create_database
    from schedd.schemas import SCOPES
    from schedd.services import auth

    db = create_database(database_url)
    with db.session() as session:
        key = auth.create_api_key(session, "bench", list(SCOPES), creator=None).key
    db.dispose()
    return key


def wait_healthy(base: str, procs: dict[str, subprocess.Popen[bytes]], home: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                tail = (home / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API did not answer /health within {START_TIMEOUT:g} s")


def _stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    for proc in procs.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def deployment(database_url: str, broker: str, home: Path, opts: Any) -> Iterator[Deployment]:
    """Start api, scheduler and ``opts.workers`` workers; yield once the API answers;
    stop them all (SIGTERM, then SIGKILL after 30 s) and delete the broker's queues."""
    task_type = f"bench-{uuid.uuid4().hex[:8]}"
    port = free_port()
    config = write_config(
        home, database_url=database_url, broker=broker, port=port, task_type=task_type, opts=opts
    )
    procs: dict[str, subprocess.Popen[bytes]] = {}
    with ExitStack() as stack:
        namespace = default_namespace(database_url)
        stack.callback(_purge, broker, task_type, namespace)
        stack.callback(_stop, procs)
        # The API migrates nothing on PostgreSQL: the scratch database is migrated.
        procs["api"] = spawn(config, "api", home, "api")
        procs["scheduler"] = spawn(config, "scheduler", home, "scheduler")
        for index in range(opts.workers):
            procs[f"worker{index + 1}"] = spawn(config, "worker", home, f"worker{index + 1}")
        deployed = Deployment(broker, task_type, port, "", home, namespace)
        wait_healthy(deployed.base, procs, home)
        deployed.key = admin_key(database_url)
        deployed.processes = {name: psutil.Process(proc.pid) for name, proc in procs.items()}
        yield deployed


def _purge(broker: str, task_type: str, namespace: str) -> None:
    try:
        broker_depth(broker, task_type, namespace, purge=True)
    except Exception as exc:  # cleaning up must not hide what the bench measured
        print(f"could not delete the bench's queues: {exc}", file=sys.stderr)


def broker_depth(broker: str, task_type: str, namespace: str, *, purge: bool = False) -> int:
    """Messages the broker holds for the bench's task type in the deployment's
    namespace (ready, not yet delivered on RabbitMQ; entries in the streams on Redis:
    acked entries are deleted)."""
    if broker == "rabbitmq":
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(BROKER_URLS["rabbitmq"]))
        try:
            channel = connection.channel()
            queue = f"{namespace}.runs.{task_type}"
            try:
                count = channel.queue_declare(queue, passive=True).method.message_count
            except pika.exceptions.ChannelClosedByBroker:  # not declared yet
                return 0
            if purge:
                channel.queue_delete(queue)
            return int(count)
        finally:
            connection.close()
    import redis

    client = redis.Redis.from_url(BROKER_URLS["redis"])
    try:
        streams = [f"{namespace}:runs:{task_type}:{priority}" for priority in range(4)]
        count = sum(int(client.xlen(stream)) for stream in streams)
        if purge:
            client.delete(*streams)
        return count
    finally:
        client.close()
