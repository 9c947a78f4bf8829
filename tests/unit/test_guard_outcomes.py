"""The guard holds each finished run's outcome until the worker's report commits, and
records it itself (fenced by the run's claim) when the worker dies or is fenced first
(issue 13: a worker killed after a command ended must not have it run again)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from schedd.db import Database
from schedd.executors import guardproc as guard_module
from schedd.executors.guard import DatabaseAccess, Guard, HeldOutcome
from schedd.executors.guardproc import Outcomes, Watch
from schedd.models import RunStatus
from schedd.services import claims
from tests.workerkit import add_run, db_url, get_run, make_task, set_run, wait_until

ROOT = Path(__file__).resolve().parents[2]


def outcome(run_id: int, claim: int = 1, worker: str = "w1", **fields: Any) -> HeldOutcome:
    values: dict[str, Any] = {
        "run_id": run_id,
        "worker_id": worker,
        "claim": claim,
        "status": "completed",
        "exit_code": 0,
        "execution_time": 1.25,
        "error_message": None,
        "result": "done\n",
        "cpu_seconds": 0.01,
        "max_rss_mb": 3.5,
    }
    values.update(fields)
    return HeldOutcome(**values)


def access(url: str, give_up: float = 300.0) -> DatabaseAccess:
    return DatabaseAccess(
        url=url,
        connection_timeout=5,
        idle_in_transaction_session_timeout=10,
        lock_timeout=10,
        statement_timeout=60,
        application_name="schedd guard test",
        give_up_seconds=give_up,
    )


class Recorder:
    """A stand-in database: records what the guard would write, can fail on demand."""

    def __init__(self, fail: int = 0) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail

    def write(self, _database: object, batch: list[HeldOutcome]) -> set[int]:
        if self.fail:
            self.fail -= 1
            raise OSError("connection refused")
        self.batches.append([o.run_id for o in batch])
        return {o.run_id for o in batch}


def watch_with(recorder: Recorder) -> Watch:
    watch = Watch(outcomes=Outcomes(connect=lambda _access: object(), write=recorder.write))
    watch.handle(access("postgresql://u:secret@db/x").line().strip().encode(), 0.0)
    watch.handle(b"f1.0", 0.0)
    watch.handle(b"h0.0", 0.0)
    return watch


def test_outcomes_round_trip_through_one_line_each() -> None:
    held = outcome(7, error_message="two\nlines", result="x\ny\n")
    line = held.line()
    assert line.endswith("\n") and line.count("\n") == 1
    watch = Watch(outcomes=Outcomes(connect=lambda _a: object(), write=Recorder().write))
    watch.handle(line.strip().encode(), 0.0)
    assert watch.outcomes.held() == [7]
    watch.handle(b"a7", 0.0)
    assert watch.outcomes.held() == []
    watch.handle(b"o{not json", 0.0)  # a broken line is ignored, like any unknown line
    watch.handle(b"o[1, 2]", 0.0)
    assert watch.outcomes.held() == []


def test_nothing_is_written_while_the_worker_heartbeats_and_acks() -> None:
    recorder = Recorder()
    watch = watch_with(recorder)
    watch.handle(outcome(1).line().strip().encode(), 0.5)
    watch.handle(b"h0.8", 0.9)
    watch.handle(b"a1", 1.2)
    watch.check(5.0)  # fenced now, but nothing is held any more
    watch.outcomes.close()
    assert recorder.batches == []


def test_the_fence_makes_the_guard_write_what_it_holds() -> None:
    recorder = Recorder(fail=2)  # the database answers on the third try
    watch = watch_with(recorder)
    watch.handle(outcome(1).line().strip().encode(), 0.2)
    watch.handle(outcome(2).line().strip().encode(), 0.3)
    watch.handle(b"a2", 0.4)
    watch.check(0.9)
    assert not watch.fenced
    watch.check(1.1)  # the last heartbeat is 1.1 s old: fenced
    assert watch.fenced
    assert wait_until(lambda: recorder.batches == [[1]], 5)
    assert watch.outcomes.held() == []
    # An outcome that arrives while fenced is written at once too.
    watch.handle(outcome(3).line().strip().encode(), 1.3)
    assert wait_until(lambda: recorder.batches == [[1], [3]], 5)
    watch.outcomes.close()


def test_a_fence_lifted_by_a_heartbeat_leaves_the_outcome_to_the_worker() -> None:
    recorder = Recorder(fail=1_000_000)
    watch = watch_with(recorder)
    watch.handle(outcome(1).line().strip().encode(), 0.2)
    watch.check(1.5)
    assert watch.fenced
    watch.handle(b"h1.6", 1.6)  # the worker's heartbeats get through again
    assert not watch.fenced
    tries = recorder.fail
    time.sleep(0.3)
    assert tries - recorder.fail <= 1  # stopped trying (at most one try was under way)
    watch.handle(b"a1", 1.7)
    watch.outcomes.close()
    assert recorder.batches == []


def test_when_the_worker_is_gone_the_guard_retries_then_gives_up() -> None:
    recorder = Recorder(fail=1_000_000)
    outcomes = Outcomes(connect=lambda _a: object(), write=recorder.write)
    outcomes.configure(access("postgresql://x/y", give_up=0.6))
    outcomes.hold(outcome(1))
    started = time.monotonic()
    outcomes.close()  # returns once it gives up
    assert 0.5 < time.monotonic() - started < 10
    assert outcomes.held() == [1] and recorder.batches == []


def test_no_database_means_no_writer_thread() -> None:
    outcomes = Outcomes()
    outcomes.hold(outcome(1))
    outcomes.close()
    assert outcomes.written == []


def test_the_guard_module_starts_without_the_database_code() -> None:
    code = (
        "import sys, schedd.executors.guardproc as g; w = g.Watch(); "
        "w.handle(b'f1', 0); w.handle(b'h0', 0); w.check(5); "
        "print(sorted(m for m in ('sqlalchemy', 'sqlmodel', 'schedd.db') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# --- a real guard process and a real database -------------------------------------


def claimed_run(db: Database, worker: str = "w1") -> claims.ClaimedRun:
    task = make_task(db, "true")
    run_id = add_run(db, task)
    with db.session() as session:
        task_type = get_run(db, run_id).task_type
        claimed = claims.claim_run(
            session, run_id, worker, task_types=[task_type], executor_types=["shell"]
        )
    assert claimed is not None
    return claimed


def held_for(claimed: claims.ClaimedRun, **fields: Any) -> HeldOutcome:
    claim = claimed.claim
    return outcome(claim.run_id, claim.claim, claim.worker_id, **fields)


def cut_off(guard: Guard) -> None:
    """What the guard sees when its worker dies: end-of-file on its stdin."""
    proc = guard._proc
    assert proc is not None and proc.stdin is not None
    proc.stdin.close()


def test_a_dead_workers_outcomes_are_recorded_fenced_and_acked_ones_are_not(
    db: Database,
) -> None:
    held, acked, taken = claimed_run(db), claimed_run(db), claimed_run(db)
    # Taken away meanwhile (the reaper, an operator): the guard must not record it.
    set_run(db, taken.claim.run_id, status=RunStatus.lost.value)
    guard = Guard()
    guard.start(fence_seconds=60, ok_at=time.monotonic(), database=access(db_url(db)))
    pid = guard.pid
    assert pid is not None
    assert "secret" not in Path(f"/proc/{pid}/cmdline").read_text()
    assert db_url(db) not in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    guard.hold(held_for(held, status="failed", exit_code=3, error_message="exit code 3"))
    guard.hold(held_for(acked))
    guard.hold(held_for(taken))
    guard.release([acked.claim.run_id])
    proc = guard._proc
    assert proc is not None
    cut_off(guard)
    assert proc.wait(30) == 0
    guard.close()
    run = get_run(db, held.claim.run_id)
    assert (run.status, run.exit_code, run.error_message) == ("failed", 3, "exit code 3")
    assert (run.result, run.execution_time, run.max_rss_mb) == ("done\n", 1.25, 3.5)
    assert run.completed_at is not None
    assert get_run(db, acked.claim.run_id).status == RunStatus.running
    assert get_run(db, taken.claim.run_id).status == RunStatus.lost


def test_a_frozen_workers_outcome_is_recorded_at_the_fence_and_its_late_report_is_a_no_op(
    db: Database,
) -> None:
    claimed = claimed_run(db)
    guard = Guard()
    guard.start(fence_seconds=0.5, ok_at=time.monotonic(), database=access(db_url(db)))
    try:
        guard.hold(held_for(claimed))
        # No heartbeats (the worker is frozen): the guard writes it at the fence.
        assert wait_until(
            lambda: get_run(db, claimed.claim.run_id).status == RunStatus.completed, 30
        )
        final = claims.Final(claimed.claim, RunStatus.completed, 0, 1.3, None, "late\n")
        with db.session() as session:
            assert claims.finish_many(session, [final]) == set()
            assert claims.recorded(session, [final]) == {claimed.claim.run_id}
        assert get_run(db, claimed.claim.run_id).result == "done\n"
    finally:
        guard.release([claimed.claim.run_id])
        guard.close()


@pytest.mark.parametrize("status", ["completed", "failed", "timeout", "cancelled"])
def test_every_final_status_can_be_held(status: str) -> None:
    recorder = Recorder()
    outcomes = Outcomes(connect=lambda _a: object(), write=recorder.write)
    outcomes.configure(access("postgresql://x/y"))
    outcomes.hold(outcome(1, status=status))
    outcomes.close()
    assert recorder.batches == [[1]]


def test_write_outcomes_skips_a_status_a_worker_cannot_report(db: Database) -> None:
    claimed = claimed_run(db)
    written = guard_module.write_outcomes(db, [held_for(claimed, status="pending")])
    assert written == set()
    assert get_run(db, claimed.claim.run_id).status == RunStatus.running


# --- a command that ended while its worker was frozen (never reaped) -----------------


def zombie(command: str) -> subprocess.Popen[bytes]:
    """A child that has exited and is not reaped: as a frozen worker's run leaves it."""
    child = subprocess.Popen(["sh", "-c", command], start_new_session=True)
    assert wait_until(lambda: guard_module.zombie_status(child.pid) is not None, 10)
    return child


@pytest.mark.parametrize(
    ("command", "status", "exit_code", "error"),
    [
        ("exit 0", "completed", 0, None),
        ("exit 3", "failed", 3, "exited with status 3"),
        ("kill -TERM $$", "failed", 143, "killed by signal 15 (SIGTERM)"),
    ],
)
def test_the_exit_of_an_unreaped_process_is_read_as_the_worker_would_report_it(
    command: str, status: str, exit_code: int, error: str | None
) -> None:
    child = zombie(command)
    try:
        found = guard_module.zombie_status(child.pid)
        assert found is not None
        run = guard_module.RunBinding(5, 2, "w 1")
        held = guard_module.outcome_of(run, found[0], 1.5, found[1])
        assert (held.run_id, held.claim, held.worker_id) == (5, 2, "w 1")
        assert (held.status, held.exit_code, held.error_message) == (status, exit_code, error)
        assert held.execution_time == 1.5 and held.cpu_seconds is not None
    finally:
        child.wait()
    assert guard_module.zombie_status(child.pid) is None  # reaped: gone


def test_at_the_fence_a_run_that_ended_unreaped_is_recorded_and_a_running_one_is_not() -> None:
    recorder = Recorder()
    watch = watch_with(recorder)
    ended = zombie("exit 0")
    running = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        for pgid, run_id in ((ended.pid, 11), (running.pid, 12)):
            watch.handle(f"r{pgid} {run_id} 1 w1".encode(), 0.1)
            watch.handle(f"+{pgid}".encode(), 0.1)
        watch.handle(b"r1 2", 0.1)  # a short line is ignored
        watch.check(1.5)  # fenced: the ended run is recorded, the running one killed
        assert wait_until(lambda: recorder.batches == [[11]], 5)
        assert running.wait(5) == -9
        watch.outcomes.close()
    finally:
        running.kill()
        running.wait()
        ended.wait()


def test_at_end_of_file_only_commands_that_exited_are_recorded() -> None:
    # The worker's death SIGKILLs its children (PR_SET_PDEATHSIG): a command killed by
    # a signal then may be one of those, and is not the command's own end.
    watch = Watch(outcomes=Outcomes(connect=lambda _a: object(), write=Recorder().write))
    exited, killed = zombie("exit 4"), zombie("kill -KILL $$")
    try:
        for pgid, run_id in ((exited.pid, 21), (killed.pid, 22)):
            watch.handle(f"r{pgid} {run_id} 1 w1".encode(), 0.0)
            watch.handle(f"+{pgid}".encode(), 0.0)
        watch.record_ended(1.0, exits_only=True)
        assert watch.outcomes.held() == [21]
    finally:
        exited.wait()
        killed.wait()
