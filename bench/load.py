"""The trigger load of the end-to-end benchmark, run in a process of its own.

Keep-alive HTTP/1.1 connections on asyncio (bench.api_load's small client: lighter
than a general one, so the deployment, not the generator, is measured) POST
``/api/tasks/{id}/trigger``: either ``count`` requests back to back over ``conns``
connections, or a fixed ``rate`` for ``seconds`` (open loop: requests leave on their
schedule whatever the answers do). Failed requests are counted, never raised.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from bench.api_load import Connection


@dataclass
class Load:
    port: int
    key: str
    task_id: int
    conns: int
    count: int = 0
    rate: float = 0.0
    seconds: float = 0.0

    def request(self) -> bytes:
        return (
            f"POST /api/tasks/{self.task_id}/trigger HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {self.key}\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()


async def _run(load: Load) -> dict[str, Any]:
    request = load.request()
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(load.conns):
        pool.put_nowait(await Connection.open(load.port))
    counts = {"accepted": 0, "refused": 0, "failed": 0}

    async def one() -> None:
        conn = await pool.get()
        try:
            status = await conn.call(request)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            counts["failed"] += 1
            conn.close()
            conn = await Connection.open(load.port)
        else:
            counts["accepted" if 200 <= status < 300 else "refused"] += 1
        finally:
            pool.put_nowait(conn)

    start = time.perf_counter()
    if load.rate > 0:
        pending: set[asyncio.Task[None]] = set()
        for index in range(int(load.rate * load.seconds)):
            delay = start + index / load.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    else:
        remaining = load.count

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await one()

        await asyncio.gather(*(worker() for _ in range(load.conns)))
    elapsed = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait().close()
    return {
        **counts,
        "seconds": round(elapsed, 3),
        "sent_per_second": round(sum(counts.values()) / max(elapsed, 1e-6), 1),
    }


def drive(load: Load) -> dict[str, Any]:
    """Send the load; counts of accepted/refused/failed requests and the send rate."""
    return asyncio.run(_run(load))
