"""HTTP API load: GET /api/tasks/{id} and POST /api/workers/{id}/heartbeat.

Starts a real `schedd run --role api` on loopback (on SQLite and on PostgreSQL), then
drives it from a separate process with a small keep-alive HTTP/1.1 client on asyncio
(lighter than a general client, so the server, not the load generator, is measured):

- fixed rate: requests sent on a fixed schedule (open loop, default 1,000/s); each
  latency counts from the request's *scheduled* time, so a stalled server is not
  hidden by the generator waiting for it (no coordinated omission);
- saturation: C connections sending back to back for the duration (closed loop).

Authenticated with the admin API key, as an operator's client would be. Prints a table
and writes JSON under bench/results/. Bounded: every phase lasts --seconds.

    python -m bench.api_load [--seconds 10] [--rate 1000] [--connections 32]
                             [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.common import scratch_database, summary_ms, table, url_of, write_result
from schedd.services import workers

HEARTBEAT = (
    b'{"current_task_count": 2, "load_average": 0.5, "memory_usage": 512, "cpu_usage": 25.0}'
)
WORKER_ID = "worker-001"


@dataclass(frozen=True)
class Target:
    name: str
    method: str
    path: str
    body: bytes = b""


TARGETS = [
    Target("GET /api/tasks/{id}", "GET", "/api/tasks/1"),
    Target("POST heartbeat", "POST", f"/api/workers/{WORKER_ID}/heartbeat", HEARTBEAT),
]


# --- the load generator (runs in its own process) --------------------------------


def _request_bytes(target: Target, port: int, key: str) -> bytes:
    lines = [
        f"{target.method} {target.path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Authorization: Bearer {key}",
    ]
    if target.body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(target.body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + target.body


class Connection:
    """One keep-alive connection: send a request, read one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def call(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


async def _fixed_rate(
    port: int, request: bytes, rate: float, seconds: float, connections: int
) -> tuple[list[float], int, float]:
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await Connection.open(port))
    latencies: list[float] = []
    errors = 0

    async def one(scheduled: float) -> None:
        nonlocal errors
        conn = await pool.get()
        try:
            status = await conn.call(request)
        finally:
            pool.put_nowait(conn)
        if 200 <= status < 300:
            latencies.append(time.perf_counter() - scheduled)
        else:
            errors += 1

    total = int(rate * seconds)
    start = time.perf_counter()
    pending = set()
    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait().close()
    return latencies, errors, elapsed


async def _saturate(
    port: int, request: bytes, seconds: float, connections: int
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal errors
        conn = await Connection.open(port)
        try:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                status = await conn.call(request)
                if 200 <= status < 300:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors += 1
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(connections)))
    return latencies, errors, time.perf_counter() - start


def _drive(args: tuple[str, Target, int, str, float, float, int]) -> dict[str, Any]:
    mode, target, port, key, rate, seconds, connections = args
    request = _request_bytes(target, port, key)
    if mode == "fixed":
        result = asyncio.run(_fixed_rate(port, request, rate, seconds, connections))
    else:
        result = asyncio.run(_saturate(port, request, seconds, connections))
    latencies, errors, elapsed = result
    return {
        "requests": len(latencies) + errors,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "rps": round(len(latencies) / elapsed, 1),
        **summary_ms(latencies),
    }


# --- the server under test -------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def api_daemon(
    database_url: str, home: Path, processes: int = 1
) -> Iterator[tuple[int, str, psutil.Process]]:
    """`schedd run --role api` on ``database_url`` with ``processes`` API processes;
    yields (port, admin key, process)."""
    port = _free_port()
    data_dir = home / "data"
    # An empty config file of its own: a schedd.toml in /etc/schedd or ~/.config on this
    # host must not change what is measured (a daemon without --config reads them).
    config = home / "schedd.toml"
    config.write_text("")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SCHEDD_", "SCHED_")) and k not in ("DATABASE_URL", "JWT_SECRET")
    }
    env.update(
        HOME=str(home),
        API_HOST="127.0.0.1",
        API_PORT=str(port),
        DATABASE_URL=database_url,
        SCHEDD_DAEMON__DATA_DIR=str(data_dir),
        SCHEDD_CONFIG=str(config),
        SCHEDD_LOG="warning",
        JWT_SECRET="bench-" + "j" * 40,
        SCHEDD_API__PROCESSES=str(processes),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "schedd", "run", "--role", "api"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"schedd exited: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.1)
        else:
            raise RuntimeError("schedd did not answer /health in 30 s")
        key = _admin_key(base, data_dir, database_url)
        server = psutil.Process(proc.pid)
        for _ in range(300):  # the helper processes have started
            if len(server.children()) >= processes - 1:
                break
            time.sleep(0.1)
        time.sleep(0.5 if processes > 1 else 0)  # and serve
        yield port, key, server
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _admin_key(base: str, data_dir: Path, database_url: str) -> str:
    path = data_dir / "admin.key"
    if path.exists():  # the embedded default made one
        return path.read_text().strip()
    from schedd.db import create_database
    from schedd.schemas import SCOPES
    from schedd.services import auth

    db = create_database(database_url)
    with db.session() as session:
        key = auth.create_api_key(session, "bench", list(SCOPES), creator=None).key
    db.dispose()
    return key


def _cpu(server: psutil.Process) -> float:
    """CPU seconds of the API process and its helper processes (several API processes)."""
    total = 0.0
    for proc in [server, *server.children()]:
        with suppress(psutil.Error):
            total += sum(proc.cpu_times()[:2])
    return total


def _prepare(base: str, key: str, database_url: str) -> None:
    """The task and the worker the requests name."""
    headers = {"Authorization": f"Bearer {key}"}
    task = {"name": "bench", "executor": "shell", "command": "true", "schedule": "0 0 * * * *"}
    response = httpx.post(base + "/api/tasks", json=task, headers=headers)
    response.raise_for_status()
    from schedd.db import create_database

    db = create_database(database_url)
    with db.session() as session:
        workers.register(
            session,
            worker_id=WORKER_ID,
            hostname="bench",
            ip_address="127.0.0.1",
            task_types=["shell"],
            executor_types=["shell"],
            max_concurrent_tasks=5,
            pid=1,
            version="bench",
            stale_after=3600,
        )
    db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--rate", type=float, default=1000.0, help="fixed-rate requests/s")
    parser.add_argument("--connections", type=int, default=32, help="connections")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--processes",
        default="1",
        help="API processes (api.processes), comma-separated to compare (PostgreSQL only "
        "above 1), e.g. 1,2",
    )
    parser.add_argument(
        "--endpoints", default="get,heartbeat", help="which of get,heartbeat to measure"
    )
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    context = multiprocessing.get_context("spawn")
    wanted = {"get": TARGETS[0], "heartbeat": TARGETS[1]}
    targets = [wanted[name] for name in args.endpoints.split(",")]
    runs = [
        (backend, int(count))
        for count in args.processes.split(",")
        for backend in args.backends.split(",")
        if backend == "postgresql" or int(count) == 1
    ]
    for backend, processes in runs:
        with (
            scratch_database(backend) as db,
            tempfile.TemporaryDirectory() as home,
            api_daemon(url_of(db), Path(home), processes) as (port, key, server),
        ):
            _prepare(f"http://127.0.0.1:{port}", key, url_of(db))
            for target in targets:
                for mode in ("fixed", "saturation"):
                    job = (mode, target, port, key, args.rate, args.seconds, args.connections)
                    # A separate process, so the generator never shares a core's GIL
                    # with the server.
                    with context.Pool(1) as pool:
                        before = _cpu(server)
                        result = pool.apply(_drive, (job,))
                        used = _cpu(server) - before
                    # Server CPU per request: comparable even on a busy machine.
                    result["server_cpu_ms"] = round(used * 1000 / max(result["requests"], 1), 3)
                    rows.append(
                        {
                            "backend": backend,
                            "processes": processes,
                            "endpoint": target.name,
                            "mode": mode,
                            **result,
                        }
                    )
                    print(json.dumps(rows[-1]), file=sys.stderr)

    headers = [
        "backend",
        "processes",
        "endpoint",
        "mode",
        "requests",
        "errors",
        "rps",
        "p50_ms",
        "p99_ms",
        "server_cpu_ms",
    ]
    print(table(headers, [[row[h] for h in headers] for row in rows]))
    path = write_result(
        "api_load",
        {
            "rate": args.rate,
            "seconds": args.seconds,
            "connections": args.connections,
            "results": rows,
        },
    )
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
