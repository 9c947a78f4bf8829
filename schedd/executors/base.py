"""The executor interface: how a worker runs one run, and what it learns back.

Contract every executor keeps:

- ``execute(spec, output, stop)`` blocks the calling thread (a worker's run thread,
  never a broker's I/O thread) until the work is over and every process it started is
  gone, and returns an :class:`Outcome`.
- Problems of the run itself (a missing script, a refused address, a bad
  ``metadata.http``) are a ``failed`` Outcome whose ``error`` says why in one sentence;
  ``execute`` raises only for bugs.
- Output is handed to ``output.write`` as raw bytes while the run goes; the sink bounds
  what it keeps, so an executor never buffers output itself.
- The run's own limit, ``spec.timeout`` seconds, ends it as ``timeout``.
- ``stop`` ends it early for the worker's reasons (cancel, lost, fence, shutdown); the
  Outcome is then ``stopped`` and the worker decides from ``stop.reason`` what to record.
  A process executor answers ``stop`` within about 0.2 s by sending SIGTERM to the whole
  process group, then SIGKILL after the grace :func:`kill_grace` gives.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from schedd.executors.cgroups import Limits

# A cancelled run must be gone within 2 s of the request (the worker polls for cancel
# requests every 0.5 s), so cancel never waits the full kill grace.
CANCEL_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class RunSpec:
    """Everything an executor needs to run one run."""

    run_id: int
    task_id: int
    task_name: str
    executor: str
    command: str
    arguments: Sequence[str]
    timeout: float  # seconds; the task's timeout_seconds or [scheduler] task_timeout
    attempt: int = 0  # the run's retry_count: 0 for the first attempt
    scheduled_for: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    worker_id: str = ""  # the worker that runs it (SCHED_WORKER_ID)
    task_environment: Mapping[str, str] = field(default_factory=dict)  # the task's variables
    run_as: str | None = None  # the task's run user (user[:group]); None: the worker's
    working_dir: str | None = None  # the task's directory; None: the worker's choice
    limits: Limits = field(default_factory=Limits)  # enforced by the run's cgroup
    claim: int | None = None  # the claim the worker's writes are fenced by (the guard's too)

    def environment(self) -> dict[str, str]:
        """The SCHED_* variables every child process gets."""
        scheduled = self.scheduled_for
        return {
            "SCHED_RUN_ID": str(self.run_id),
            "SCHED_TASK_ID": str(self.task_id),
            "SCHED_TASK_NAME": self.task_name,
            "SCHED_SCHEDULED_FOR": (
                scheduled.isoformat().replace("+00:00", "Z") if scheduled else ""
            ),
            "SCHED_ATTEMPT": str(self.attempt),
            "SCHED_WORKER_ID": self.worker_id,
        }


class Ending(StrEnum):
    """How a run ended, as far as the executor can tell."""

    completed = "completed"
    failed = "failed"
    timeout = "timeout"
    stopped = "stopped"  # ended because ``stop`` was set; see StopSignal.reason


@dataclass(frozen=True)
class Outcome:
    ending: Ending
    exit_code: int | None = None  # a process's exit status; 128+N when killed by signal N
    error: str | None = None  # one sentence for error_message; None when completed
    duration: float = 0.0  # seconds from start to end (execution_time)
    # What the run produced, shown as its result instead of the output's tail (a
    # function's return value); None keeps the tail.
    result: str | None = None
    cpu_seconds: float | None = None  # CPU time of the run's processes (user + system)
    max_rss_mb: float | None = None  # their peak memory


class StopReason(StrEnum):
    """Why the worker ends a run before it ends by itself."""

    cancelled = "cancelled"  # an operator asked to cancel it
    lost = "lost"  # the run is no longer this worker's (a fenced write matched nothing)
    fenced = "fenced"  # the worker could not heartbeat for longer than its fence time
    shutdown = "shutdown"  # drain grace over, or a second SIGTERM


class StopSignal:
    """A one-way flag the worker sets to end a run; the first reason given wins.

    ``immediate`` asks for SIGKILL at once instead of SIGTERM and a grace period; it can
    be added later (a second signal during a drain) but never taken back.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.reason: StopReason | None = None
        self.immediate = False

    def stop(self, reason: StopReason, *, immediate: bool = False) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
            self.immediate = self.immediate or immediate
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


def kill_grace(stop: StopSignal, configured: float) -> float:
    """Seconds between SIGTERM and SIGKILL when ``stop`` ends a run.

    A run that is lost or fenced may already run elsewhere (or soon will), so it is
    killed at once; a cancel waits at most CANCEL_GRACE_SECONDS.
    """
    if stop.immediate or stop.reason in (StopReason.lost, StopReason.fenced):
        return 0.0
    if stop.reason is StopReason.cancelled:
        return min(configured, CANCEL_GRACE_SECONDS)
    return configured


class OutputSink(Protocol):
    """Where an executor writes the run's output (stdout and stderr, merged)."""

    def write(self, data: bytes) -> None: ...


class Executor(ABC):
    """Runs one kind of task; see the module docstring for the contract."""

    name: ClassVar[str]

    @abstractmethod
    def execute(self, spec: RunSpec, output: OutputSink, stop: StopSignal) -> Outcome: ...

    def close(self) -> None:  # noqa: B027 - most executors hold nothing
        """Release what the executor keeps between runs (the worker has no runs left)."""


def describe_seconds(seconds: float) -> str:
    """``30 s``, ``1.5 s``: how error messages show a duration."""
    return f"{seconds:g} s"
