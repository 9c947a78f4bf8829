"""Real scheduler processes on PostgreSQL: exactly-once firing, SIGKILL, and misfire.

Each test starts `schedd run --role scheduler` subprocesses (database broker, no
workers: runs are counted in the database) against a fresh database, inserts tasks
firing every second with ``next_run_at`` at a round second T0, and checks every
(task, scheduled second) afterwards.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from schedd.db import Database
from schedd.types import utcnow
from tests.schedulerkit import (
    Schedulers,
    fired,
    insert_tasks,
    pause_all,
    round_second,
    wait_until_fired_through,
)

pytestmark = [pytest.mark.external_service, pytest.mark.slow]

TASKS = 200
WINDOW = 30  # seconds of fires checked
GRACE = 5.0  # misfire_grace_seconds of the misfire test


@pytest.fixture
def schedulers(pg_url: str, tmp_path: Path) -> Iterator[Schedulers]:
    group = Schedulers(pg_url, tmp_path)
    yield group
    group.close()


def assert_exactly_once(db: Database, task_ids: list[int], t0: datetime) -> list[float]:
    """Every task has exactly one run for each second T0 .. T0+WINDOW-1 and none before
    T0. Returns the fire lags (created_at - scheduled_for) in the window."""
    window = [t0 + timedelta(seconds=s) for s in range(WINDOW)]
    runs = fired(db)
    lags: list[float] = []
    for task_id in task_ids:
        times = [t for t, _ in runs[task_id]]
        assert len(times) == len(set(times)), f"task {task_id} fired a second twice"
        assert min(times) == t0, f"task {task_id} fired before T0 or missed T0"
        in_window = [t for t in times if t < t0 + timedelta(seconds=WINDOW)]
        assert in_window == window, f"task {task_id}: missing {sorted(set(window) - set(times))}"
        lags += [(c - t).total_seconds() for t, c in runs[task_id] if t in set(window)]
    return lags


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_three_schedulers_fire_every_second_exactly_once(
    database: Database, schedulers: Schedulers
) -> None:
    for index in range(3):
        schedulers.start(index)
    t0 = round_second(1.5)
    task_ids = list(insert_tasks(database, t0, ["fire_once"] * TASKS))
    wait_until_fired_through(database, t0 + timedelta(seconds=WINDOW - 1), WINDOW + 20)
    pause_all(database)
    assert schedulers.stop_all() == [0, 0, 0]
    lags = assert_exactly_once(database, task_ids, t0)
    assert len(lags) == TASKS * WINDOW
    print(f"fire lag p50 {quantile(lags, 0.5):.3f}s p99 {quantile(lags, 0.99):.3f}s")
    assert quantile(lags, 0.99) < GRACE  # nothing was late enough to count as missed


def test_a_scheduler_killed_mid_way_loses_and_duplicates_nothing(
    database: Database, schedulers: Schedulers
) -> None:
    for index in range(3):
        schedulers.start(index)
    t0 = round_second(1.5)
    task_ids = list(insert_tasks(database, t0, ["fire_once"] * TASKS))
    time.sleep(max(0.0, (t0 - utcnow()).total_seconds()) + WINDOW / 3)
    schedulers.kill(0)  # SIGKILL: no cleanup, transactions cut off mid-flight
    time.sleep(5)
    schedulers.start(0)
    wait_until_fired_through(database, t0 + timedelta(seconds=WINDOW - 1), WINDOW + 20)
    pause_all(database)
    assert schedulers.stop_all() == [0, 0, 0]
    assert_exactly_once(database, task_ids, t0)


def test_a_stopped_scheduler_applies_each_misfire_policy_on_restart(
    database: Database, schedulers: Schedulers
) -> None:
    # "Stopped for a minute", shortened to 20 s: with a 5 s grace the semantics are the
    # same (most of the gap is missed, its last seconds are on time).
    schedulers.settings.update(misfire_grace_seconds=str(GRACE), max_catchup="100")
    schedulers.start(0)
    t0 = round_second(1.5)
    by_task = insert_tasks(database, t0, ["fire_once", "skip", "fire_all"] * 20)
    wait_until_fired_through(database, t0 + timedelta(seconds=4), 20)
    assert schedulers.stop(0) == 0
    stopped = utcnow()
    time.sleep(20)
    schedulers.start(0)
    wait_until_fired_through(database, utcnow() + timedelta(seconds=3), 20)
    pause_all(database)
    assert schedulers.stop(0) == 0
    runs = fired(database)
    output = schedulers.output()
    firsts: dict[str, set[datetime]] = defaultdict(set)
    for policy in ("fire_once", "skip", "fire_all"):
        assert f"(misfire_policy {policy})" in output  # the missed fires were logged
    for task_id, policy in by_task.items():
        times = [t for t, _ in runs[task_id]]
        created = dict(runs[task_id])
        assert len(times) == len(set(times))
        before = [t for t in times if created[t] < stopped]
        last_before = max(before)
        after = [t for t in times if t > last_before]
        restart = min(created[t] for t in after)  # the first pass after the restart
        gap = [
            last_before + timedelta(seconds=s)
            for s in range(1, int((restart - last_before).total_seconds()) + 1)
        ]
        assert len(gap) > 10 + GRACE  # the scheduler really was away
        present = [t for t in gap if t in set(times)]
        # Every second after the restart fired, and the run of the first pass after the
        # restart of every second later than the gap too.
        end = max(times)
        tail = [t for t in times if t > gap[-1]]
        assert tail == [gap[-1] + timedelta(seconds=s) for s in range(1, len(tail) + 1)]
        assert end >= restart - timedelta(seconds=1)
        if policy == "fire_all":
            assert present == gap, f"task {task_id}: fire_all skipped missed times"
            continue
        assert present, f"task {task_id}: the on-time end of the gap did not fire"
        first = present[0]
        # After the first run in the gap, every second of the gap fired (on time).
        assert present == gap[gap.index(first) :]
        firsts[policy].add(first)
        late = (created[first] - first).total_seconds()
        if policy == "fire_once":
            # One run for all the missed times: the latest missed, then the on-time ones.
            assert GRACE < late <= GRACE + 1.5, f"task {task_id}: {late}"
        else:
            # skip: the missed times have no run; the first run is the first on-time one.
            assert GRACE - 1 < late <= GRACE + 0.5, f"task {task_id}: {late}"
    # One pass decided all of them at the same instant: fire_once's single catch-up run
    # is the latest missed second, the one just before skip's first on-time second.
    [once], [skip] = firsts["fire_once"], firsts["skip"]
    assert once == skip - timedelta(seconds=1)
