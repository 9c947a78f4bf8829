"""Waiting for a run to end, and following its output (`task trigger --wait`, `run logs -f`).

Both poll: the run (status) or its output (from the last offset, the API's
``next_offset``), quickly at first and then at most once a second, so a run of a
fraction of a second ends the wait at once and a long one costs one request a second.
On a terminal the wait shows a spinner on stderr; elsewhere it writes a line on stderr
each time the status changes. The run's own output goes to stdout unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.status import Status

from schedctl.client import Client
from schedctl.context import Cli
from schedctl.exits import WaitTimedOut

Json = dict[str, Any]

TERMINAL = frozenset({"completed", "failed", "timeout", "cancelled", "lost", "skipped"})
FIRST_POLL = 0.1
MAX_POLL = 1.0


class Clock:
    """Poll intervals that grow to MAX_POLL, and the optional --timeout deadline."""

    def __init__(self, timeout: float | None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.interval = FIRST_POLL
        self._sleep = sleep

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def pause(self) -> None:
        wait = self.interval
        if self.deadline is not None:
            wait = max(0.0, min(wait, self.deadline - time.monotonic()))
        self._sleep(wait)
        self.interval = min(MAX_POLL, self.interval * 1.5)

    def reset(self) -> None:
        self.interval = FIRST_POLL


def describe(run: Json) -> str:
    text = f"run {run['id']}: {run['status']}"
    if run["status"] == "running" and run.get("worker_id"):
        text += f" on {run['worker_id']}"
    return text


class Progress:
    """A spinner on a terminal's stderr, or a line per status change elsewhere."""

    def __init__(self, cli: Cli, label: str) -> None:
        self.cli = cli
        self.label = label
        self.started = time.monotonic()
        self.last: str | None = None
        self.status: Status | None = None

    @contextmanager
    def shown(self) -> Iterator[Progress]:
        if self.cli.env.stderr_isatty:
            self.status = self.cli.env.console(stderr=True).status(self.label, spinner="dots")
            self.status.start()
        try:
            yield self
        finally:
            if self.status is not None:
                self.status.stop()
                self.status = None

    def update(self, run: Json) -> None:
        text = describe(run)
        if self.status is not None:
            elapsed = time.monotonic() - self.started
            self.status.update(f"{self.label}: {text.split(': ', 1)[1]} ({elapsed:.0f}s)")
        elif text != self.last:
            self.cli.note(text)
        self.last = text

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


def follow_output(
    client: Client,
    run_id: int,
    sink: Callable[[Json], None],
    clock: Clock,
    *,
    offset: int = 0,
    until_finished: bool = True,
) -> int:
    """Pass each new slice of the run's output to ``sink`` until the run has ended and
    everything is read (or, without ``until_finished``, until nothing new is stored).
    Returns the offset reached. WaitTimedOut when ``clock`` expires first."""
    while True:
        piece = client.run_output(run_id, offset)
        if piece["data"]:
            sink(piece)
            clock.reset()
        offset = piece["next_offset"]
        if piece["finished"] or (not until_finished and not piece["data"]):
            return offset
        if not piece["data"]:
            if clock.expired():
                raise WaitTimedOut(
                    f"run {run_id} is still going after {clock.timeout:g}s; stopped waiting "
                    "(the run goes on)"
                )
            clock.pause()


def wait_for_run(
    cli: Cli,
    run: Json,
    *,
    label: str,
    follow: bool = False,
    timeout: float | None = None,
    sink: Callable[[Json], None] | None = None,
) -> Json:
    """Wait until ``run`` has ended and return it as it ended.

    With ``follow``, the output goes to ``sink`` from the moment the run starts.
    Ctrl-C stops waiting (not the run) with a hint how to find it again.
    """
    client = cli.client
    clock = Clock(timeout)
    run_id = run["id"]
    progress = Progress(cli, label)
    try:
        with progress.shown():
            current = run
            while current["status"] not in TERMINAL:
                progress.update(current)
                if follow and current["status"] == "running":
                    break
                if clock.expired():
                    raise WaitTimedOut(
                        f"run {run_id} is still {current['status']} after {clock.timeout:g}s; "
                        "stopped waiting (the run goes on)"
                    )
                clock.pause()
                current = client.get_run(run_id)
        if follow and sink is not None:
            follow_output(client, run_id, sink, clock)
            current = client.get_run(run_id)
        return current
    except KeyboardInterrupt:
        progress.stop()
        cli.note(
            f"stopped waiting; run {run_id} goes on (follow it: schedctl run logs -f {run_id})"
        )
        raise
