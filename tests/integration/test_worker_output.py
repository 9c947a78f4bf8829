"""Run output: stored while the run goes, followed from an offset, capped with a marker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from schedd.db import Database
from schedd.errors import InvalidInput, NotFound
from schedd.models import RunStatus
from schedd.services import claims, output
from schedd.services.output import Chunk, OutputBatch
from tests.workerkit import add_run, get_run, make_task, running_worker, wait_for_status


def held_run(db: Database) -> tuple[int, claims.Claim]:
    run_id = add_run(db, make_task(db, "true"))
    with db.session() as session:
        (claimed,) = claims.claim_next(
            session, "w1", limit=1, task_types=["shell"], executor_types=["shell"]
        )
    return run_id, claimed.claim


def store(
    db: Database,
    claim: claims.Claim,
    *chunks: Chunk,
    total: int,
    drop: tuple[int, int] | None = None,
) -> None:
    with db.session() as session:
        assert claims.report_output(session, claim, OutputBatch(chunks, drop, total))


def read(db: Database, run_id: int, offset: int = 0, limit: int = 1_000_000) -> output.OutputSlice:
    with db.session() as session:
        return output.read(session, run_id, offset, limit=limit)


def test_a_follower_reads_new_output_from_its_offset_until_the_run_ends(db: Database) -> None:
    run_id, claim = held_run(db)
    store(db, claim, Chunk(0, 0, "first\n"), total=6)
    assert read(db, run_id) == ("first\n", 6, False)
    assert read(db, run_id, 6) == ("", 6, False)
    store(db, claim, Chunk(1, 6, "zweite ü\n"), total=16)
    assert read(db, run_id, 6) == ("zweite ü\n", 16, False)
    with db.session() as session:
        claims.finish(
            session,
            claim,
            status=RunStatus.completed,
            exit_code=0,
            execution_time=0.1,
            error_message=None,
            result=None,
            batch=OutputBatch([Chunk(2, 16, "end\n")], None, 20),
        )
    assert read(db, run_id, 16) == ("end\n", 20, True)
    assert read(db, run_id, 3) == ("st\nzweite ü\nend\n", 20, True)


def test_a_gap_left_by_the_cap_reads_as_a_marker(db: Database) -> None:
    run_id, claim = held_run(db)
    store(db, claim, Chunk(0, 0, "head\n"), Chunk(1, 5, "dropped"), total=12)
    store(db, claim, Chunk(2, 1012, "tail\n"), total=1017, drop=(1, 1))
    assert read(db, run_id).text == "head\n[... 1007 bytes omitted ...]\ntail\n"
    assert read(db, run_id, 7).text == "[... 1005 bytes omitted ...]\ntail\n"


def test_a_limited_read_continues_where_it_stopped(db: Database) -> None:
    run_id, claim = held_run(db)
    store(db, claim, Chunk(0, 0, "aé" * 10), total=30)
    text, offset, _ = read(db, run_id, limit=4)
    assert (text, offset) == ("aéa", 4)
    rest = read(db, run_id, offset)
    assert text + rest.text == "aé" * 10


def test_reading_an_unknown_run_or_a_bad_offset_is_refused(db: Database) -> None:
    with pytest.raises(NotFound):
        read(db, 12345)
    run_id, _ = held_run(db)
    with pytest.raises(InvalidInput, match="offset"):
        read(db, run_id, -1)


@pytest.mark.slow
def test_output_can_be_followed_while_the_run_goes(db: Database, tmp_path: Path) -> None:
    task = make_task(db, "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.4; done")
    run_id = add_run(db, task)
    with running_worker(db, tmp_path):
        wait_for_status(db, run_id, "running", 5)
        deadline = time.monotonic() + 3
        seen = ""
        while "tick 2" not in seen and time.monotonic() < deadline:
            seen = read(db, run_id).text
            time.sleep(0.1)
        assert "tick 1\n" in seen
        assert get_run(db, run_id).status == RunStatus.running  # followed before the end
        run = wait_for_status(db, run_id, "completed", 10)
    assert read(db, run_id) == ("".join(f"tick {i}\n" for i in range(1, 7)), 42, True)
    assert run.output_bytes == 42


@pytest.mark.slow
def test_a_task_printing_50_mb_keeps_head_and_tail_within_the_cap(
    db: Database, tmp_path: Path
) -> None:
    cap = 256 * 1024
    lines = 3_400_000  # "line 000000001\n" is 15 bytes: 51 MB
    task = make_task(db, f"seq -f 'line %09.0f' 1 {lines}", timeout_seconds=60)
    run_id = add_run(db, task)
    with running_worker(db, tmp_path, max_output_bytes=str(cap)):
        run = wait_for_status(db, run_id, "completed", 60)
    assert run.output_bytes == 15 * lines
    text, _, finished = read(db, run_id, limit=10 * cap)
    assert finished
    stored = [line for line in text.splitlines() if line.startswith("line ")]
    assert text.startswith("line 000000001\nline 000000002\n")
    assert text.endswith(f"line {lines:09d}\n")
    assert "bytes omitted ...]" in text
    assert sum(len(line) + 1 for line in stored) <= cap
    assert run.result is not None and run.result.endswith(f"line {lines:09d}\n")
