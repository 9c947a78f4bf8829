"""A scheduler stopped (SIGSTOP) inside its fire transaction, beside a healthy one.

The stopped scheduler holds the row locks of the tasks it claimed; the healthy one
skips locked rows. The server ends the stopped session after
``database.idle_in_transaction_session_timeout`` (its transaction rolls back), so the
healthy scheduler fires those tasks within the misfire grace: every second of every
task fires exactly once, none is dropped under ``fire_once``, and the stopped
scheduler, woken, carries on without firing anything twice.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

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

TASKS = 150
WINDOW = 11  # seconds of fires checked
STALL = 6.0  # seconds the scheduler stays stopped, longer than the grace
GRACE = "2.5"  # misfire_grace_seconds
IDLE_TIMEOUT = "0.5"  # database.idle_in_transaction_session_timeout


@pytest.fixture
def schedulers(pg_url: str, tmp_path: Path) -> Iterator[Schedulers]:
    group = Schedulers(pg_url, tmp_path, misfire_grace_seconds=GRACE)
    yield group
    group.close()


def holds_row_locks(db: Database, pid: int) -> bool:
    """Whether the session of scheduler ``pid`` sits in a transaction that has locked
    or written rows (a transaction id), waiting for its client."""
    with db.engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"
                " AND backend_xid IS NOT NULL AND state = 'idle in transaction'"
            ),
            {"name": f"schedd scheduler pid {pid}"},
        ).scalar_one()
    return bool(found)


def stop_inside_transaction(db: Database, proc: subprocess.Popen[bytes]) -> None:
    """SIGSTOP ``proc`` while its session holds row locks (tries until it does)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not holds_row_locks(db, proc.pid):
            time.sleep(0.002)
            continue
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(0.05)  # let the server see what the last message left it doing
        if holds_row_locks(db, proc.pid):
            return
        os.kill(proc.pid, signal.SIGCONT)  # it had committed meanwhile: try again
    raise AssertionError("never caught the scheduler inside its fire transaction")


def test_a_scheduler_stopped_in_its_fire_transaction_drops_no_fire_time(
    database: Database, schedulers: Schedulers
) -> None:
    timeout = {"SCHEDD_DATABASE__IDLE_IN_TRANSACTION_SESSION_TIMEOUT": IDLE_TIMEOUT}
    for index in (0, 1):
        schedulers.launch(index, **timeout)
    for index in (0, 1):
        schedulers.wait_started(index)
    t0 = round_second(1.5)
    ids = list(insert_tasks(database, t0, ["fire_once"] * TASKS))
    time.sleep(max(0.0, (t0 - database.now()).total_seconds()) + 1)
    stalled = schedulers.procs[1]
    stop_inside_transaction(database, stalled)
    stopped_at = database.now()
    time.sleep(STALL)
    os.kill(stalled.pid, signal.SIGCONT)
    # The window covers the stall and a second after it (catching the scheduler inside
    # its transaction can take a while on a loaded machine).
    after_stall = stopped_at + timedelta(seconds=STALL + 1)
    seconds = max(WINDOW, math.ceil((after_stall - t0).total_seconds()) + 1)
    last = t0 + timedelta(seconds=seconds - 1)
    wait_until_fired_through(database, last, seconds + 15)
    pause_all(database)
    assert schedulers.stop_all() == [0, 0], schedulers.output()
    runs = fired(database)
    window = [t0 + timedelta(seconds=s) for s in range(seconds)]
    missing = duplicated = 0
    for task_id in ids:
        times = [t for t, _ in runs[task_id] if t <= last]
        duplicated += len(times) - len(set(times))
        missing += len(set(window) - set(times))
    assert (missing, duplicated) == (0, 0), schedulers.output()[-4000:]
    # The server had ended the stopped scheduler's session: its transaction failed.
    assert "scheduler fire step failed" in schedulers.logs[1].read_text()
