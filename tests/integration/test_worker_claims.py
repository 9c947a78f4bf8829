"""Claims and fenced writes (services.claims) on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from schedd.db import Database
from schedd.models import Priority, RunOutput, RunStatus
from schedd.services import claims, output
from schedd.services.claims import Claim
from schedd.services.output import Chunk, OutputBatch
from tests.workerkit import add_run, get_run, make_task, set_run

SHELL = {"task_types": ["shell"], "executor_types": ["shell"]}


def claim_next(
    db: Database, worker: str, limit: int, **kinds: list[str]
) -> list[claims.ClaimedRun]:
    with db.session() as session:
        return claims.claim_next(session, worker, limit=limit, **{**SHELL, **kinds})


def batch(*texts: str, start: int = 0, seq: int = 0) -> OutputBatch:
    chunks, offset = [], start
    for index, text in enumerate(texts):
        chunks.append(Chunk(seq + index, offset, text))
        offset += len(text.encode())
    return OutputBatch(chunks, None, offset)


def test_claim_takes_the_highest_priority_then_the_oldest_up_to_the_limit(db: Database) -> None:
    task = make_task(db, "true")
    low = add_run(db, task, priority=Priority.low)
    normal = [add_run(db, task) for _ in range(2)]
    critical = add_run(db, task, priority=Priority.critical)
    claimed = claim_next(db, "w1", 3)
    assert [c.claim.run_id for c in claimed] == [critical, *normal]
    assert get_run(db, low).status == RunStatus.pending


def test_a_claim_never_takes_more_than_the_limit(db: Database) -> None:
    task = make_task(db, "true")
    for _ in range(10):
        add_run(db, task)
    assert len(claim_next(db, "w1", 3)) == 3
    with db.session() as session:
        statuses = session.execute(
            sa.text("SELECT status, count(*) FROM task_runs GROUP BY status ORDER BY status")
        ).all()
    assert statuses == [("pending", 7), ("running", 3)]


def test_a_claim_records_the_worker_the_attempt_and_the_database_time(db: Database) -> None:
    task = make_task(db, "echo $1", arguments=["from-task"])
    run_id = add_run(db, task)
    override = add_run(db, task, arguments=["from-run"])
    claimed = {c.claim.run_id: c for c in claim_next(db, "w1", 5)}
    assert claimed[run_id].claim == Claim(run_id, "w1", 1)
    assert claimed[run_id].arguments == ["from-task"]
    assert claimed[override].arguments == ["from-run"]
    assert claimed[run_id].command == "echo $1"
    row = get_run(db, run_id)
    assert (row.status, row.worker_id, row.claim) == ("running", "w1", 1)
    assert row.started_at is not None and row.heartbeat_at == row.started_at


def test_only_served_task_types_and_offered_executors_are_claimed(db: Database) -> None:
    shell = add_run(db, make_task(db, "true"))
    reports = add_run(db, make_task(db, "true", task_type="reports"))
    python = add_run(db, make_task(db, "job.py", executor="python"))
    taken = claim_next(db, "w1", 10)
    assert [c.claim.run_id for c in taken] == [shell]
    taken = claim_next(db, "w2", 10, task_types=["reports", "python"])
    assert [c.claim.run_id for c in taken] == [reports]  # python is not an offered executor
    assert get_run(db, python).status == RunStatus.pending


def test_a_run_with_a_cancel_request_is_not_claimed(db: Database) -> None:
    run_id = add_run(db, make_task(db, "true"))
    set_run(db, run_id, cancel_requested=True)
    assert claim_next(db, "w1", 5) == []


def test_concurrent_claims_take_each_run_exactly_once(db: Database) -> None:
    task = make_task(db, "true")
    run_ids = {add_run(db, task) for _ in range(120)}
    taken: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        mine = taken.setdefault(name, [])
        try:
            while claimed := claim_next(db, name, 7):
                mine.extend(c.claim.run_id for c in claimed)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    everything = [run_id for ids in taken.values() for run_id in ids]
    assert sorted(everything) == sorted(run_ids)
    with db.session() as session:
        claims_made = session.execute(sa.text("SELECT DISTINCT claim FROM task_runs")).all()
    assert claims_made == [(1,)]


def test_claim_by_id_is_exclusive(db: Database) -> None:
    run_id = add_run(db, make_task(db, "true"))
    with db.session() as session:
        first = claims.claim_run(session, run_id, "w1", **SHELL)
    with db.session() as session:
        second = claims.claim_run(session, run_id, "w2", **SHELL)
        status = claims.run_status(session, run_id)
    assert first is not None and first.claim == Claim(run_id, "w1", 1)
    assert second is None and status == RunStatus.running


def test_claim_by_id_leaves_a_run_for_another_executor_pending(db: Database) -> None:
    run_id = add_run(db, make_task(db, "job.py", executor="python", task_type="shell"))
    with db.session() as session:
        assert claims.claim_run(session, run_id, "w1", **SHELL) is None
        assert claims.run_status(session, run_id) == RunStatus.pending


def test_finish_records_the_result_and_the_output(db: Database) -> None:
    run_id = add_run(db, make_task(db, "true"))
    (claimed,) = claim_next(db, "w1", 1)
    with db.session() as session:
        assert claims.finish(
            session,
            claimed.claim,
            status=RunStatus.failed,
            exit_code=3,
            execution_time=1.5,
            error_message="exited with status 3",
            result="tail\n",
            batch=batch("head\n", "tail\n"),
        )
    row = get_run(db, run_id)
    assert (row.status, row.exit_code, row.execution_time) == ("failed", 3, 1.5)
    assert (row.error_message, row.result, row.output_bytes) == (
        "exited with status 3",
        "tail\n",
        10,
    )
    assert row.completed_at is not None
    with db.session() as session:
        assert output.read(session, run_id) == ("head\ntail\n", 10, True)


def test_writes_of_a_run_marked_lost_change_nothing(db: Database) -> None:
    run_id = add_run(db, make_task(db, "true"))
    (claimed,) = claim_next(db, "w1", 1)
    set_run(db, run_id, status=RunStatus.lost.value, error_message="worker w1 stopped heartbeating")
    before = get_run(db, run_id)
    with db.session() as session:
        assert not claims.report_output(session, claimed.claim, batch("late output\n"))
        assert not claims.finish(
            session,
            claimed.claim,
            status=RunStatus.completed,
            exit_code=0,
            execution_time=1.0,
            error_message=None,
            result="done",
            batch=batch("late output\n"),
        )
        assert claims.hand_back(session, claimed.claim) is None
    assert get_run(db, run_id) == before
    with db.session() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(RunOutput)).scalar() == 0


def test_the_fence_holds_the_attempt_a_reclaimed_run_rejects_the_old_claim(db: Database) -> None:
    run_id = add_run(db, make_task(db, "true"))
    (first,) = claim_next(db, "w1", 1)
    with db.session() as session:
        assert claims.hand_back(session, first.claim) is RunStatus.pending
    (second,) = claim_next(db, "w1", 1)  # the same worker id, a new attempt
    assert second.claim.claim == 2
    with db.session() as session:
        assert not claims.finish(
            session,
            first.claim,
            status=RunStatus.completed,
            exit_code=0,
            execution_time=0.1,
            error_message=None,
            result=None,
        )
    assert get_run(db, run_id).status == RunStatus.running


def test_hand_back_makes_the_run_pending_again_and_its_output_starts_over(db: Database) -> None:
    run_id = add_run(db, make_task(db, "true"))
    (claimed,) = claim_next(db, "w1", 1)
    with db.session() as session:
        assert claims.report_output(session, claimed.claim, batch("partial\n"))
        assert claims.hand_back(session, claimed.claim) is RunStatus.pending
    row = get_run(db, run_id)
    assert (row.status, row.worker_id, row.started_at, row.claim) == ("pending", None, None, 1)
    claim_next(db, "w2", 1)
    with db.session() as session:
        assert output.read(session, run_id).text == ""


def test_hand_back_of_a_run_with_a_cancel_request_cancels_it(db: Database) -> None:
    run_id = add_run(db, make_task(db, "true"))
    (claimed,) = claim_next(db, "w1", 1)
    set_run(db, run_id, cancel_requested=True)
    with db.session() as session:
        assert claims.hand_back(session, claimed.claim) is RunStatus.cancelled
    row = get_run(db, run_id)
    assert row.status == RunStatus.cancelled and row.completed_at is not None


def test_check_finds_cancel_requests_and_runs_taken_away(db: Database) -> None:
    task = make_task(db, "true")
    keep, cancel, lost, other = (add_run(db, task) for _ in range(4))
    held = [c.claim for c in claim_next(db, "w1", 4)]
    set_run(db, cancel, cancel_requested=True)
    set_run(db, lost, status=RunStatus.lost.value)
    set_run(db, other, worker_id="w2")
    with db.session() as session:
        checks = claims.check(session, held)
    assert checks.cancel == {cancel}
    assert checks.gone == {lost, other}
    assert keep not in checks.cancel | checks.gone


def test_a_batch_claim_takes_only_the_claimable_runs_each_once(db: Database) -> None:
    task = make_task(db, "true")
    pending = [add_run(db, task) for _ in range(3)]
    taken = add_run(db, task)
    ended = add_run(db, task, status=RunStatus.completed)
    other = add_run(db, make_task(db, "job.py", executor="python", task_type="shell"))
    with db.session() as session:
        assert claims.claim_run(session, taken, "w2", **SHELL) is not None
    delivered = [*pending, pending[0], taken, ended, other, 999_999]
    with db.session() as session:
        claimed = claims.claim_runs(session, delivered, "w1", **SHELL)
        statuses = claims.run_statuses(session, delivered)
    assert [c.claim for c in claimed] == [Claim(run_id, "w1", 1) for run_id in pending]
    assert statuses == {
        **{run_id: RunStatus.running for run_id in pending},
        taken: RunStatus.running,
        ended: RunStatus.completed,
        other: RunStatus.pending,
    }
    assert get_run(db, taken).worker_id == "w2"


def test_runs_claimed_in_a_batch_are_fenced_one_by_one(db: Database) -> None:
    task = make_task(db, "true")
    first, second = add_run(db, task), add_run(db, task)
    with db.session() as session:
        held = {
            c.claim.run_id: c.claim
            for c in claims.claim_runs(session, [first, second], "w1", **SHELL)
        }
    # The first run is handed back and claimed again by another worker: w1's claim on it
    # is stale, its claim on the second run is not.
    with db.session() as session:
        assert claims.hand_back(session, held[first]) == RunStatus.pending
    with db.session() as session:
        (again,) = claims.claim_runs(session, [first], "w2", **SHELL)
    assert again.claim == Claim(first, "w2", 2)
    ended = {"status": RunStatus.completed, "exit_code": 0, "execution_time": 0.1}
    with db.session() as session:
        stale = claims.finish(session, held[first], error_message=None, result=None, **ended)
        fresh = claims.finish(session, held[second], error_message=None, result=None, **ended)
    assert (stale, fresh) == (False, True)
    assert (get_run(db, first).status, get_run(db, first).worker_id) == ("running", "w2")
    assert get_run(db, second).status == RunStatus.completed


def test_concurrent_batch_claims_of_the_same_deliveries_claim_each_run_once(
    db: Database,
) -> None:
    task = make_task(db, "true")
    run_ids = [add_run(db, task) for _ in range(40)]
    taken: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        # Every worker got every message (duplicates), in its own order.
        mine = run_ids[::-1] if name.endswith(("1", "3")) else run_ids
        try:
            with db.session() as session:
                claimed = claims.claim_runs(session, mine, name, **SHELL)
            taken[name] = [c.claim.run_id for c in claimed]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    everything = [run_id for ids in taken.values() for run_id in ids]
    assert sorted(everything) == run_ids


def test_a_batch_of_reports_is_fenced_run_by_run(db: Database) -> None:
    """Ends and output of several runs written together: each run is matched against
    its own claim, so a run taken away (lost, re-claimed, cancelled and ended) refuses
    its part and the others are written with their values and output."""
    task = make_task(db, "true")
    ids = [add_run(db, task) for _ in range(5)]
    held = {c.claim.run_id: c.claim for c in claim_next(db, "w1", 5)}
    lost, reclaimed, *kept = ids
    set_run(db, lost, status=RunStatus.lost.value)
    with db.session() as session:
        assert claims.hand_back(session, held[reclaimed]) is RunStatus.pending
    (again,) = claim_next(db, "w2", 1)
    assert again.claim == Claim(reclaimed, "w2", 2)

    with db.session() as session:
        stored = claims.report_outputs(
            session, [(held[run_id], batch(f"out {run_id}\n")) for run_id in ids]
        )
    assert stored == set(kept)
    finals = [
        claims.Final(
            held[run_id],
            RunStatus.failed if run_id == kept[0] else RunStatus.completed,
            index,
            0.25 * index,
            "exited with status 1" if run_id == kept[0] else None,
            f"result {run_id}",
            batch("end\n", start=len(f"out {run_id}\n"), seq=1),
            cpu_seconds=float("nan") if run_id == kept[1] else 0.5,
            max_rss_mb=12.0,
        )
        for index, run_id in enumerate(ids)
    ]
    with db.session() as session:
        assert claims.finish_many(session, finals) == set(kept)
        assert claims.finish_many(session, finals) == set()  # ended: the fence refuses

    for index, run_id in enumerate(ids):
        row = get_run(db, run_id)
        if run_id not in kept:
            assert row.result is None and row.completed_at is None
            continue
        assert row.status == ("failed" if run_id == kept[0] else "completed")
        assert (row.exit_code, row.execution_time, row.result) == (
            index,
            0.25 * index,
            f"result {run_id}",
        )
        assert row.cpu_seconds == (None if run_id == kept[1] else 0.5)
        assert row.max_rss_mb == 12.0 and row.completed_at is not None
        assert row.output_bytes == len(f"out {run_id}\nend\n")
        with db.session() as session:
            assert output.read(session, run_id).text == f"out {run_id}\nend\n"
    assert (get_run(db, lost).status, get_run(db, reclaimed).worker_id) == ("lost", "w2")
    with db.session() as session:
        assert output.read(session, lost).text == ""
        assert output.read(session, reclaimed).text == ""
