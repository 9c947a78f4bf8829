"""A worker cut off from PostgreSQL by the network, not frozen: it keeps running, its
database connections hang (an asyncio TCP proxy between it and PostgreSQL stops
forwarding, then forwards again, as a partition that heals).

Its guard kills the run once no heartbeat got through for the fence time, the reaper
hands the run to another worker, and when the network heals the cut-off worker's
late writes are fenced: the first attempt never runs beside its retry, only the retry
ends, and the cut-off worker carries on.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from schedd.models import RunStatus, WorkerStatus
from tests.fault.test_frozen_worker import LEDGER_TASK, ledger
from tests.faultkit import Cluster
from tests.workerkit import add_run, make_task, wait_for_status, wait_until

pytestmark = [pytest.mark.external_service, pytest.mark.slow]


class CuttableProxy:
    """A TCP proxy to ``target`` in a thread; ``cut()`` stops forwarding both ways
    (connections stay open, bytes wait), ``heal()`` forwards again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._open: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())
        self.loop.run_forever()

    async def _serve(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._open is not None
        self._writers.add(writer)
        await self._open.wait()  # a connection made during the cut hangs in its start
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._open is not None
        try:
            while data := await reader.read(65536):
                await self._open.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def _set(self, forwarding: bool) -> None:
        assert self._open is not None
        event = self._open
        self.loop.call_soon_threadsafe(event.set if forwarding else event.clear)

    def cut(self) -> None:
        self._set(False)

    def heal(self) -> None:
        self._set(True)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        assert self._open is not None
        self._open.set()
        for writer in self._writers:
            writer.close()  # each pump's read ends, and its task with it
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=2)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@pytest.fixture
def proxy() -> Iterator[CuttableProxy]:
    running = CuttableProxy(("127.0.0.1", 5432))
    running.start()
    yield running
    running.close()


def test_a_worker_cut_off_from_the_database_is_fenced_and_never_runs_beside_its_retry(
    cluster: Cluster, proxy: CuttableProxy, tmp_path: Path
) -> None:
    path = tmp_path / "ledger"
    cut_url = sa.make_url(cluster.url).set(host="127.0.0.1", port=proxy.port)
    cluster.start("scheduler")
    worker_a, a = cluster.start_worker(
        DATABASE_URL=cut_url.render_as_string(hide_password=False),
        SCHEDD_DATABASE__CONNECTION_TIMEOUT="2",
    )
    task = make_task(
        cluster.db, LEDGER_TASK, arguments=[str(path)], retry_count=1, retry_delay_seconds=0
    )
    first = add_run(cluster.db, task)
    wait_for_status(cluster.db, first, "running", 10)
    assert wait_until(lambda: any(e[0] == "tick" for e in ledger(path)), 5), cluster.logs()

    proxy.cut()
    _, b = cluster.start_worker()
    wait_for_status(cluster.db, first, "lost", 10)
    assert wait_until(lambda: len(cluster.runs_of(task)) == 2, 10), cluster.logs()
    retry = cluster.runs_of(task)[1].id or 0
    wait_for_status(cluster.db, retry, "completed", 15)

    proxy.heal()
    assert wait_until(
        lambda: (w := cluster.worker(a)) is not None and w.status == WorkerStatus.active, 15
    ), cluster.logs()
    time.sleep(1.5)  # the healed worker has had time to report what it saw

    entries = ledger(path)
    starts = {e[1]: (e[2], float(e[3])) for e in entries if e[0] == "start"}
    assert starts["0"][0] == a and starts["1"][0] == b
    last_tick_0 = max(float(e[2]) for e in entries if e[:2] == ["tick", "0"])
    assert last_tick_0 < starts["1"][1], "the first attempt ran beside its retry"
    assert [e[1] for e in entries if e[0] == "end"] == ["1"]  # executed to its end once
    runs = cluster.runs_of(task)
    assert [run.status for run in runs] == [RunStatus.lost, RunStatus.completed]
    assert worker_a.poll() is None  # the cut-off worker carries on
