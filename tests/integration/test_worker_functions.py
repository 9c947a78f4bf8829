"""Function runs through a real worker: what the run row and its stored output show."""

from __future__ import annotations

import json
from pathlib import Path

from schedd.db import Database
from schedd.services import output
from tests.workerkit import add_run, make_task, running_worker, set_run, wait_for_status

ROOT = Path(__file__).resolve().parents[2]


def stored_output(db: Database, run_id: int) -> str:
    with db.session() as session:
        return output.read(session, run_id, 0, limit=1_000_000).text


def function_run(db: Database, target: str, *arguments: object) -> int:
    task = make_task(
        db,
        f"tests.funcs:{target}",
        executor="function",
        arguments=[json.dumps(argument) for argument in arguments],
    )
    return add_run(db, task)


def test_a_worker_records_return_values_exceptions_and_exits_of_function_runs(
    db: Database, tmp_path: Path
) -> None:
    returned = function_run(db, "shout", "hi")
    raised = function_run(db, "fail", "bad input")
    exited = function_run(db, "exit_with", 4)
    with running_worker(db, tmp_path, working_directory=str(ROOT), function_pool_size="2"):
        ok = wait_for_status(db, returned, "completed", 20)
        failed = wait_for_status(db, raised, "failed", 20)
        gone = wait_for_status(db, exited, "failed", 20)
    assert (ok.exit_code, ok.result, ok.error_message) == (0, '"HI"', None)
    assert stored_output(db, returned) == "hi\nerr:hi\n"
    assert (failed.exit_code, failed.error_message) == (1, "ValueError: bad input")
    assert "Traceback (most recent call last)" in stored_output(db, raised)
    assert (gone.exit_code, gone.error_message) == (4, "exited with status 4")


def test_a_function_run_can_be_cancelled_while_it_runs(db: Database, tmp_path: Path) -> None:
    run_id = function_run(db, "ignore_term_then_sleep")
    with running_worker(db, tmp_path, working_directory=str(ROOT), function_pool_size="1"):
        wait_for_status(db, run_id, "running", 20)
        set_run(db, run_id, cancel_requested=True)
        run = wait_for_status(db, run_id, "cancelled", 5)
    assert run.exit_code is None
