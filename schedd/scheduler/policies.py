"""Pure scheduling decisions: misfire, overlap and retry delay (no database, no clock).

The fire pass (:mod:`schedd.scheduler.fire`) gathers facts (the due fire times, the
current time, whether a run of the task is still active, whether its upstreams allow
it) and asks these functions what to do; they are table-tested with injected times.

Misfire (``misfire_policy``), for the fire times that are due (``<= now``):

- A due time ``t`` is *on time* when ``now - t <= grace`` and *missed* otherwise.
  On-time fires always run, each its own run, whatever the policy.
- ``fire_once``: all missed times together get ONE run, scheduled for the most recent
  missed time (like Kubernetes' CronJob, which starts the latest missed schedule).
- ``skip``: missed times get no run.
- ``fire_all``: every missed time gets its own run.
- No pass creates more than ``max_catchup`` runs of one task: the most recent due
  times win, older ones are dropped. Every missed time (fired late or not) and every
  dropped time counts as missed.

Overlap (``concurrency_policy``), applied to the fires the misfire step kept, in
order, as if each fire happened at its own time:

- ``allow``: every fire runs.
- ``forbid``: a fire while a run of the task is waiting, pending or running is recorded
  as a ``skipped`` run with the reason; so of several fires in one pass only the first
  can run, and the later ones see it still pending.
- ``replace``: the newest fire runs; the task's active runs are cancelled (a running
  one is asked to stop); older fires of the same pass are recorded as skipped.

A scheduled task whose upstreams do not allow it (``blocked``) records every fire of
the pass as skipped with that reason and cancels nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from schedd.models import ConcurrencyPolicy, MisfirePolicy

# Jitter added to a retry delay: up to this fraction more, so that runs failing
# together do not all come back at the same instant.
RETRY_JITTER = 0.10


@dataclass(frozen=True)
class FirePlan:
    """What the misfire policy keeps: the times to fire, and how many were missed."""

    fires: list[datetime]
    missed: int  # due times later than grace, plus times dropped by max_catchup
    dropped: int  # due times that get no run at all (skip, fire_once, max_catchup)


@dataclass(frozen=True)
class Fire:
    """One scheduled time's outcome: a run (pending), or a skipped run with a reason."""

    scheduled_for: datetime
    reason: str | None = None  # None: the fire runs; else it is recorded as skipped

    @property
    def runs(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class FireDecision:
    """The whole outcome of firing one task in one pass."""

    fires: list[Fire] = field(default_factory=list)
    missed: int = 0
    dropped: int = 0
    cancel_active: bool = False  # replace: cancel the task's active runs first

    @property
    def runs(self) -> list[datetime]:
        return [f.scheduled_for for f in self.fires if f.runs]

    @property
    def skipped(self) -> list[datetime]:
        return [f.scheduled_for for f in self.fires if not f.runs]


def plan_fires(
    due: Sequence[datetime],
    now: datetime,
    *,
    policy: MisfirePolicy | str,
    grace: float,
    max_catchup: int,
    older: int = 0,
) -> FirePlan:
    """Apply the misfire policy to ``due``: the due fire times (ascending, ``<= now``).

    ``due`` may be only the most recent part of a long backlog: ``older`` counts the
    earlier due times left out (they are dropped and count as missed). The result holds
    at most ``max_catchup`` fires, in ascending order.
    """
    policy = MisfirePolicy(policy)
    times = list(due)[-max_catchup:] if max_catchup > 0 else []
    older += len(due) - len(times)
    missed = [t for t in times if (now - t).total_seconds() > grace]
    on_time = times[len(missed) :]  # ascending, so the missed ones come first
    if policy is MisfirePolicy.fire_all:
        fires = missed + on_time
    elif policy is MisfirePolicy.fire_once:
        fires = missed[-1:] + on_time
    else:
        fires = on_time
    dropped = older + len(times) - len(fires)
    return FirePlan(fires=fires, missed=older + len(missed), dropped=dropped)


def decide_overlap(
    fires: Sequence[datetime],
    *,
    policy: ConcurrencyPolicy | str,
    active: str | None,
    blocked: str | None = None,
) -> tuple[list[Fire], bool]:
    """Apply the concurrency policy to the kept ``fires``.

    ``active`` describes the task's active run (``"run 12 (running)"``) or is None when
    it has none; ``blocked`` is the reason the task's upstreams forbid it to run now.
    Returns the fires and whether the task's active runs must be cancelled (replace).
    """
    policy = ConcurrencyPolicy(policy)
    if not fires:
        return [], False
    if blocked is not None:
        return [Fire(t, blocked) for t in fires], False
    if policy is ConcurrencyPolicy.allow:
        return [Fire(t) for t in fires], False
    if policy is ConcurrencyPolicy.forbid:
        if active is not None:
            return [
                Fire(t, f"concurrency_policy forbid: {active} is still active") for t in fires
            ], False
        first = fires[0]
        rest = [
            Fire(t, f"concurrency_policy forbid: the run for {_iso(first)} is still active")
            for t in fires[1:]
        ]
        return [Fire(first), *rest], False
    newest = fires[-1]
    older = [
        Fire(t, f"concurrency_policy replace: superseded by the fire at {_iso(newest)}")
        for t in fires[:-1]
    ]
    return [*older, Fire(newest)], active is not None


def decide_fire(
    due: Sequence[datetime],
    now: datetime,
    *,
    misfire_policy: MisfirePolicy | str,
    concurrency_policy: ConcurrencyPolicy | str,
    grace: float,
    max_catchup: int,
    active: str | None = None,
    blocked: str | None = None,
    older: int = 0,
) -> FireDecision:
    """Misfire then overlap: everything one task's fire does in one pass."""
    plan = plan_fires(
        due, now, policy=misfire_policy, grace=grace, max_catchup=max_catchup, older=older
    )
    fires, cancel = decide_overlap(
        plan.fires, policy=concurrency_policy, active=active, blocked=blocked
    )
    return FireDecision(fires=fires, missed=plan.missed, dropped=plan.dropped, cancel_active=cancel)


def retry_delay(
    base: float,
    attempt: int,
    cap: float,
    *,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retrying attempt number ``attempt`` (0 for the first run).

    ``min(base * 2**attempt, cap)``, then up to ``RETRY_JITTER`` more (``rand()`` in
    [0, 1)). The jitter comes after the cap on purpose: runs that fail together keep
    spreading out even once their delay has reached the cap.
    """
    exponent = min(max(attempt, 0), 62)  # 2**62 s is already far beyond any cap
    delay = min(base * float(2**exponent), cap)
    return max(0.0, delay * (1.0 + RETRY_JITTER * rand()))


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
