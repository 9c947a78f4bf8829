"""Misfire, overlap and retry-delay decisions, table-driven with an injected clock.

Like Kubernetes' CronJob controller tests: each row names a situation (policy, how
many fire times were missed, whether a run is still active, the grace) and the
outcome. Times are offsets in seconds before NOW.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from schedd.scheduler.policies import (
    RETRY_JITTER,
    decide_fire,
    plan_fires,
    retry_delay,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
ACTIVE = "run 7 (running)"


def at(offset: float) -> datetime:
    return NOW - timedelta(seconds=offset)


def minutes(count: int, *, start: int = 0) -> list[int]:
    """Offsets of ``count`` per-minute fire times, oldest first, the newest ``start``
    seconds before NOW."""
    return [start + 60 * i for i in reversed(range(count))]


@dataclass(frozen=True)
class Row:
    name: str
    due: list[int]  # offsets before NOW, oldest first
    runs: list[int]  # expected pending runs (offsets)
    skipped: list[int] = field(default_factory=list)
    missed: int = 0
    misfire: str = "fire_once"
    concurrency: str = "allow"
    grace: float = 90
    active: str | None = None
    blocked: str | None = None
    cancel: bool = False
    max_catchup: int = 100
    older: int = 0


ROWS = [
    # --- misfire: nothing due, on time, late within grace --------------------------
    Row("nothing due", due=[], runs=[]),
    Row("on time", due=[0], runs=[0]),
    Row("late but within grace fires normally", due=[30], runs=[30], grace=60),
    Row("grace 0: due exactly now is on time", due=[0], runs=[0], grace=0),
    Row("grace 0: one second late is missed", due=[1], runs=[1], missed=1, grace=0),
    # --- fire_once -------------------------------------------------------------------
    Row("fire_once: one missed fires once", due=[120], runs=[120], missed=1),
    Row(
        "fire_once: three missed fire once, latest", due=minutes(3, start=120), runs=[120], missed=3
    ),
    Row(
        "fire_once: missed collapse, on-time fire each",
        due=minutes(6),
        runs=[120, 60, 0],
        missed=4,
    ),
    Row(
        "fire_once: 150 missed beyond max_catchup still fire once",
        due=minutes(150, start=120),
        runs=[120],
        missed=150,
    ),
    Row("fire_once: huge grace, nothing is missed", due=minutes(6), runs=minutes(6), grace=1e6),
    # --- skip ------------------------------------------------------------------------
    Row("skip: one missed does not fire", due=[120], runs=[], missed=1, misfire="skip"),
    Row("skip: on-time fires still fire", due=minutes(6), runs=[60, 0], missed=4, misfire="skip"),
    Row("skip: late within grace fires", due=[30], runs=[30], misfire="skip", grace=60),
    Row("skip: 150 missed", due=minutes(150, start=120), runs=[], missed=150, misfire="skip"),
    # --- fire_all --------------------------------------------------------------------
    Row(
        "fire_all: every missed time fires",
        due=minutes(6),
        runs=minutes(6),
        missed=4,
        misfire="fire_all",
    ),
    Row(
        "fire_all: at most max_catchup, the most recent",
        due=minutes(150, start=120),
        runs=minutes(100, start=120),
        missed=150,
        misfire="fire_all",
    ),
    Row(
        "fire_all: an older backlog left out counts as missed",
        due=minutes(3, start=120),
        runs=minutes(3, start=120),
        missed=1003,
        misfire="fire_all",
        older=1000,
    ),
    Row(
        "fire_all: max_catchup 2 keeps the latest two",
        due=minutes(4),
        runs=[60, 0],
        missed=2,
        misfire="fire_all",
        max_catchup=2,
    ),
    # --- forbid ----------------------------------------------------------------------
    Row(
        "forbid: active run skips an on-time fire",
        due=[0],
        runs=[],
        skipped=[0],
        concurrency="forbid",
        active=ACTIVE,
    ),
    Row("forbid: no active run fires", due=[0], runs=[0], concurrency="forbid"),
    Row(
        "forbid: two on-time fires, the second overlaps the first",
        due=[60, 0],
        runs=[60],
        skipped=[0],
        concurrency="forbid",
    ),
    Row(
        "forbid: active run, missed and on-time all skipped",
        due=[300, 240, 0],
        runs=[],
        skipped=[240, 0],
        missed=2,
        concurrency="forbid",
        active=ACTIVE,
    ),
    Row(
        "forbid + fire_all: first missed runs, the rest overlap",
        due=[120, 60, 0],
        runs=[120],
        skipped=[60, 0],
        missed=2,
        misfire="fire_all",
        concurrency="forbid",
        grace=30,
    ),
    Row(
        "forbid + skip: missed times are not even recorded",
        due=[120, 0],
        runs=[],
        skipped=[0],
        missed=1,
        misfire="skip",
        concurrency="forbid",
        active=ACTIVE,
    ),
    # --- replace ---------------------------------------------------------------------
    Row(
        "replace: active run is cancelled",
        due=[0],
        runs=[0],
        concurrency="replace",
        active=ACTIVE,
        cancel=True,
    ),
    Row("replace: no active run, nothing to cancel", due=[0], runs=[0], concurrency="replace"),
    Row(
        "replace: older fires of the pass are superseded",
        due=[60, 0],
        runs=[0],
        skipped=[60],
        concurrency="replace",
    ),
    Row(
        "replace: nothing due cancels nothing",
        due=[],
        runs=[],
        concurrency="replace",
        active=ACTIVE,
    ),
    Row(
        "replace + skip: only missed times, nothing runs, nothing cancelled",
        due=[300],
        runs=[],
        missed=1,
        misfire="skip",
        concurrency="replace",
        active=ACTIVE,
    ),
    # --- allow -----------------------------------------------------------------------
    Row("allow: active run does not matter", due=[0], runs=[0], active=ACTIVE),
    # --- dependency gate -------------------------------------------------------------
    Row(
        "blocked by an upstream: skipped with the reason",
        due=[0],
        runs=[],
        skipped=[0],
        blocked="upstream task 'a' (id 1) has not run yet",
    ),
    Row(
        "blocked + replace: the active run is left alone",
        due=[0],
        runs=[],
        skipped=[0],
        concurrency="replace",
        active=ACTIVE,
        blocked="upstream task 'a' (id 1) has not run yet",
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_fire_decision(row: Row) -> None:
    decision = decide_fire(
        [at(o) for o in row.due],
        NOW,
        misfire_policy=row.misfire,
        concurrency_policy=row.concurrency,
        grace=row.grace,
        max_catchup=row.max_catchup,
        active=row.active,
        blocked=row.blocked,
        older=row.older,
    )
    assert decision.runs == [at(o) for o in row.runs]
    assert decision.skipped == [at(o) for o in row.skipped]
    assert decision.missed == row.missed
    assert decision.cancel_active is row.cancel


def test_every_skipped_fire_says_why() -> None:
    decision = decide_fire(
        [at(60), at(0)],
        NOW,
        misfire_policy="fire_once",
        concurrency_policy="forbid",
        grace=90,
        max_catchup=100,
        active=ACTIVE,
    )
    reasons = [f.reason for f in decision.fires]
    assert reasons == [
        "concurrency_policy forbid: run 7 (running) is still active",
        "concurrency_policy forbid: run 7 (running) is still active",
    ]


def test_blocked_reason_is_recorded_verbatim() -> None:
    reason = "upstream task 'extract' (id 3): its latest run 9 is failed, not completed"
    decision = decide_fire(
        [NOW],
        NOW,
        misfire_policy="fire_once",
        concurrency_policy="allow",
        grace=60,
        max_catchup=100,
        blocked=reason,
    )
    assert [f.reason for f in decision.fires] == [reason]


@pytest.mark.parametrize("policy", ["fire_once", "skip", "fire_all"])
@pytest.mark.parametrize("count", [0, 1, 5, 99, 100, 101, 500])
@pytest.mark.parametrize("grace", [0.0, 59.0, 600.0])
def test_plan_invariants(policy: str, count: int, grace: float) -> None:
    due = [at(o) for o in minutes(count)]
    plan = plan_fires(due, NOW, policy=policy, grace=grace, max_catchup=100)
    assert plan.fires == sorted(plan.fires)
    assert set(plan.fires) <= set(due)
    assert len(plan.fires) <= 100
    # Every due time is either fired or dropped; dropped ones are always missed ones.
    assert len(plan.fires) + plan.dropped == count
    assert plan.dropped <= plan.missed
    on_time = [t for t in due if (NOW - t).total_seconds() <= grace]
    assert set(on_time[-100:]) <= set(plan.fires)


@pytest.mark.parametrize(
    ("base", "attempt", "cap", "rand", "expected"),
    [
        (10, 0, 3600, 0.0, 10.0),  # first retry waits the base delay
        (10, 1, 3600, 0.0, 20.0),
        (10, 3, 3600, 0.0, 80.0),
        (10, 10, 3600, 0.0, 3600.0),  # capped
        (10, 10, 3600, 0.5, 3600.0 * (1 + RETRY_JITTER * 0.5)),  # jitter on top of the cap
        (10, 2, 3600, 0.999, 40.0 * (1 + RETRY_JITTER * 0.999)),
        (0, 5, 3600, 0.7, 0.0),  # no delay configured: retry at once
        (10, 5000, 60, 0.0, 60.0),  # absurd attempt numbers do not overflow
    ],
)
def test_retry_delay(base: float, attempt: int, cap: float, rand: float, expected: float) -> None:
    assert retry_delay(base, attempt, cap, rand=lambda: rand) == pytest.approx(expected)


def test_retry_delay_jitter_stays_within_ten_percent() -> None:
    delays = {retry_delay(10, 2, 3600) for _ in range(200)}
    assert min(delays) >= 40.0
    assert max(delays) <= 44.0
    assert len(delays) > 1  # actually jittered
