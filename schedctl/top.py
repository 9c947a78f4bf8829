"""`schedctl top`: a live view of workers, running runs, queue depth and recent failures.

A snapshot is a handful of list calls (so it needs only the read scopes, and works the
same in --db mode); the view is rebuilt from each snapshot. Keys are read from the
terminal in cbreak mode, so `q` quits without Enter.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, TextIO

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from schedctl import render as r
from schedctl import views
from schedctl.client import Client

Json = dict[str, Any]
FAILED = ("failed", "timeout", "lost")


@dataclass
class Snapshot:
    taken_at: str
    workers: list[Json]
    worker_counts: dict[str, int]
    running: list[Json]
    running_total: int
    queue_depth: int
    failures: list[Json]
    failures_last_day: int
    task_names: dict[int, str]

    def as_json(self) -> Json:
        data = asdict(self)
        data["task_names"] = {str(k): v for k, v in self.task_names.items()}
        return data


def take(client: Client, *, rows: int = 10) -> Snapshot:
    now = r.now()
    day_ago = (now - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    workers = client.list_workers(size=100)
    counts = {"active": 0, "draining": 0, "offline": 0}
    for worker in workers["items"]:
        counts[worker["status"]] = counts.get(worker["status"], 0) + 1
    running = client.list_runs(status="running", size=rows)
    queue = client.list_runs(status="pending", size=1)["total"]
    failures: list[Json] = []
    failed_total = 0
    for status in FAILED:
        page = client.list_runs(status=status, since=day_ago, size=rows)
        failures.extend(page["items"])
        failed_total += page["total"]
    failures = sorted(failures, key=lambda run: run["id"], reverse=True)[:rows]
    names = client.task_names({run["task_id"] for run in [*running["items"], *failures]})
    return Snapshot(
        taken_at=now.isoformat().replace("+00:00", "Z"),
        workers=workers["items"],
        worker_counts=counts,
        running=running["items"],
        running_total=running["total"],
        queue_depth=queue,
        failures=failures,
        failures_last_day=failed_total,
        task_names=names,
    )


def _running(snapshot: Snapshot, fill: bool) -> RenderableType:
    table = r.columns("RUN", "TASK", "WORKER", "STARTED", "TRY")
    now = r.now()
    for run in snapshot.running:
        table.add_row(
            str(run["id"]),
            Text(snapshot.task_names.get(run["task_id"], str(run["task_id"]))),
            r.plain(run.get("worker_id")),
            r.relative(run.get("started_at"), now),
            str(run["retry_count"]),
        )
    title = f"Running ({snapshot.running_total})"
    body: RenderableType = table if snapshot.running else Text("nothing running", style="dim")
    return Panel(body, title=title, expand=fill)


def _failures(snapshot: Snapshot, fill: bool) -> RenderableType:
    table = r.columns("RUN", "TASK", "STATUS", "ENDED", "EXIT", "ERROR")
    table.columns[-1].max_width = 50
    now = r.now()
    for run in snapshot.failures:
        table.add_row(
            str(run["id"]),
            Text(snapshot.task_names.get(run["task_id"], str(run["task_id"]))),
            r.status(run["status"]),
            r.relative(run.get("completed_at"), now),
            r.plain(run.get("exit_code")),
            Text(r.plain(run.get("error_message"))),
        )
    title = f"Recent failures ({snapshot.failures_last_day} in 24h)"
    body: RenderableType = table if snapshot.failures else Text("none", style="dim")
    return Panel(body, title=title, expand=fill)


def view(
    snapshot: Snapshot, source: str, interval: float | None, *, fill: bool = True
) -> RenderableType:
    """The screen for ``snapshot``; ``fill`` stretches the panels to the terminal width."""
    counts = snapshot.worker_counts
    taken = datetime.fromisoformat(snapshot.taken_at)
    head = Text(f"sched top · {source} · {taken:%H:%M:%S}Z", style="bold")
    if interval:
        head.append(f" · every {interval:g}s · q quits", style="dim")
    summary = Text(
        f"workers {counts.get('active', 0)} active, {counts.get('draining', 0)} draining, "
        f"{counts.get('offline', 0)} offline · running {snapshot.running_total} · "
        f"queue {snapshot.queue_depth} · failures (24h) {snapshot.failures_last_day}"
    )
    workers = views.worker_list(
        {"items": snapshot.workers, "total": len(snapshot.workers), "page": 1, "size": 100}
    )[0]
    return Group(
        head,
        summary,
        Panel(workers, title=f"Workers ({len(snapshot.workers)})", expand=fill),
        _running(snapshot, fill),
        _failures(snapshot, fill),
    )


@contextmanager
def keys(stream: TextIO, enabled: bool) -> Iterator[Callable[[float], str]]:
    """Read single key presses from a terminal (cbreak mode, restored on exit)."""
    if not enabled:

        def wait(timeout: float) -> str:
            time.sleep(timeout)
            return ""

        yield wait
        return
    fd = stream.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def read(timeout: float) -> str:
        ready, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, 32).decode(errors="replace") if ready else ""

    try:
        yield read
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def stdin_is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and stream is sys.stdin
    except ValueError:
        return False
