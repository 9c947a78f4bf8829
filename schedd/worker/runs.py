"""The runs a worker holds, and the thread that executes one of them.

A run is *held* from its claim until its end is written (or found to be someone
else's): it is *executing* while its executor runs, then *reporting* until the monitor
has written its final report. Capacity and heartbeats count every held run, so the
database never shows more runs of a worker running than it may run, and a run whose
report waits for the database is not reaped meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from schedd import tracing
from schedd.executors.base import (
    Ending,
    Executor,
    Outcome,
    RunSpec,
    StopReason,
    StopSignal,
)
from schedd.models import RunStatus
from schedd.services.claims import Claim, ClaimedRun
from schedd.worker.capture import OutputCapture

log = logging.getLogger("schedd.worker")


@dataclass
class ActiveRun:
    claimed: ClaimedRun
    spec: RunSpec
    capture: OutputCapture
    stop: StopSignal = field(default_factory=StopSignal)
    execute_span: tracing.Span | None = None  # tracing on: ended when the executor returns

    @property
    def claim(self) -> Claim:
        return self.claimed.claim

    @property
    def run_id(self) -> int:
        return self.claimed.claim.run_id


class Action(StrEnum):
    finish = "finish"  # write the run's end (completed, failed, timeout, cancelled)
    hand_back = "hand_back"  # give it back as pending (drain, fence)
    drop = "drop"  # the run is no longer ours: write nothing


@dataclass(frozen=True)
class Report:
    """What to write about a run whose executor has returned."""

    run: ActiveRun
    action: Action
    status: RunStatus | None = None
    exit_code: int | None = None
    execution_time: float = 0.0
    error_message: str | None = None
    cpu_seconds: float | None = None
    max_rss_mb: float | None = None


_STOPPED = {
    StopReason.cancelled: (Action.finish, "cancelled by request"),
    StopReason.shutdown: (Action.hand_back, None),
    StopReason.fenced: (Action.hand_back, None),
    StopReason.lost: (Action.drop, None),
}
_ENDED = {
    Ending.completed: RunStatus.completed,
    Ending.failed: RunStatus.failed,
    Ending.timeout: RunStatus.timeout,
}


def report_for(run: ActiveRun, outcome: Outcome) -> Report:
    """Turn an executor's Outcome into what the worker writes."""
    if outcome.ending is Ending.stopped:
        reason = run.stop.reason or StopReason.shutdown
        action, message = _STOPPED[reason]
        status = RunStatus.cancelled if reason is StopReason.cancelled else None
        return Report(
            run,
            action,
            status,
            None,
            outcome.duration,
            message,
            outcome.cpu_seconds,
            outcome.max_rss_mb,
        )
    return Report(
        run,
        Action.finish,
        _ENDED[outcome.ending],
        outcome.exit_code,
        outcome.duration,
        outcome.error,
        outcome.cpu_seconds,
        outcome.max_rss_mb,
    )


def execute(run: ActiveRun, executors: Mapping[str, Executor]) -> Report:
    """Run ``run`` to its end in the calling thread; never raises."""
    executor = executors.get(run.spec.executor)
    try:
        if executor is None:
            outcome = Outcome(
                Ending.failed,
                error=f"this worker does not offer the {run.spec.executor!r} executor",
            )
        else:
            outcome = executor.execute(run.spec, run.capture, run.stop)
    except Exception as exc:  # a bug in an executor must still end the run
        log.exception("run %d: the %s executor failed", run.run_id, run.spec.executor)
        outcome = Outcome(Ending.failed, error=f"internal error in the worker: {exc!r}")
    run.capture.close()
    if outcome.result is not None:
        run.capture.set_result(outcome.result)
    return report_for(run, outcome)


class RunBook:
    """The runs this worker holds; thread-safe. ``changed`` wakes waiters on any change."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Condition()
        self._executing: dict[int, ActiveRun] = {}
        self._reporting: dict[int, ActiveRun] = {}
        self._reports: list[Report] = []

    def add(self, run: ActiveRun) -> None:
        with self._lock:
            self._executing[run.run_id] = run
            self._lock.notify_all()

    def finished(self, report: Report) -> None:
        """The run's executor returned: free its slot and queue its report."""
        with self._lock:
            run = self._executing.pop(report.run.run_id)
            self._reporting[run.run_id] = run
            self._reports.append(report)
            self._lock.notify_all()

    def take_reports(self) -> list[Report]:
        with self._lock:
            reports, self._reports = self._reports, []
            return reports

    def requeue(self, reports: Iterable[Report]) -> None:
        """Reports whose write failed: try again next time."""
        with self._lock:
            self._reports[:0] = list(reports)

    def forget(self, run_ids: Iterable[int]) -> None:
        """Reports written (or given up): the runs are no longer held."""
        with self._lock:
            for run_id in run_ids:
                self._reporting.pop(run_id, None)
            self._lock.notify_all()

    def executing(self) -> list[ActiveRun]:
        with self._lock:
            return list(self._executing.values())

    def held_ids(self) -> list[int]:
        with self._lock:
            return [*self._executing, *self._reporting]

    def free(self) -> int:
        """Slots for new claims: a run counts until its end is written, so the database
        never shows more than ``capacity`` runs of this worker running."""
        with self._lock:
            return max(0, self.capacity - len(self._executing) - len(self._reporting))

    def has_reports(self) -> bool:
        with self._lock:
            return bool(self._reports)

    def idle(self) -> bool:
        """Nothing executing and nothing waiting to be reported."""
        with self._lock:
            return not self._executing and not self._reporting

    def wait(self, timeout: float) -> None:
        """Sleep until the book changes or ``timeout`` passes."""
        with self._lock:
            self._lock.wait(timeout)

    def wake(self) -> None:
        with self._lock:
            self._lock.notify_all()

    def stop_all(self, reason: StopReason, *, immediate: bool = False) -> int:
        """Stop every executing run; returns how many there were."""
        runs = self.executing()
        for run in runs:
            run.stop.stop(reason, immediate=immediate)
        return len(runs)
