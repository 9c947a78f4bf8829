"""A scheduler whose host clock runs an hour ahead (libfaketime) beside a correct one.

Both fire by the database's clock: every second of every-second tasks fires exactly
once, none before its time, and the skewed scheduler says its clock is off.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from schedd.db import Database
from tests.schedulerkit import (
    Schedulers,
    fired,
    insert_tasks,
    pause_all,
    round_second,
    wait_until_fired_through,
)

pytestmark = [pytest.mark.external_service, pytest.mark.slow]

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
SECONDS = 8


@pytest.fixture
def schedulers(pg_url: str, tmp_path: Path) -> Iterator[Schedulers]:
    group = Schedulers(pg_url, tmp_path, max_clock_skew_seconds="2")
    yield group
    group.close()


@pytest.mark.skipif(not os.path.exists(FAKETIME), reason="libfaketime is not installed")
def test_a_scheduler_an_hour_ahead_consumes_no_fire_time(
    database: Database, schedulers: Schedulers
) -> None:
    schedulers.start(0)
    # FAKETIME_DONT_FAKE_MONOTONIC: only the wall clock is off, as with a bad NTP.
    schedulers.start(1, LD_PRELOAD=FAKETIME, FAKETIME="+1h", FAKETIME_DONT_FAKE_MONOTONIC="1")
    t0 = round_second(1.5)
    ids = list(insert_tasks(database, t0, ["fire_once"] * 5))
    last = t0 + timedelta(seconds=SECONDS - 1)
    wait_until_fired_through(database, last, SECONDS + 10)
    pause_all(database)
    time.sleep(0.5)
    runs = fired(database)
    window = [t0 + timedelta(seconds=s) for s in range(SECONDS)]
    for task_id in ids:
        times = [t for t, _ in runs[task_id]]
        assert len(times) == len(set(times)), f"task {task_id} fired a second twice"
        assert times[: len(window)] == window, (task_id, times[:12], schedulers.output())
        assert max(times) <= last + timedelta(seconds=3), "fired times not yet due"
        early = [(t, c) for t, c in runs[task_id] if c < t]
        assert early == [], f"task {task_id} fired before its time: {early[:3]}"
    assert "clock is +3600" in schedulers.output()
