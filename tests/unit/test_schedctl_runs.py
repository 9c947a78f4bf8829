"""Runs from schedctl: trigger, wait, follow, logs, cancel, retry, top; --db mode, no worker.

A test plays the worker by writing the run's output and end state into the database
from a thread, so the waiting and following logic is tested without a daemon (the e2e
tests run the real worker).
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import Result

from schedctl.env import Environment
from schedd.db import Database, create_database
from schedd.models import TaskRun
from schedd.services import output
from schedd.types import utcnow
from tests.schedctlkit import Cli, migrated_sqlite, one_line

runs = TaskRun.__table__  # type: ignore[attr-defined]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    cli = Cli(tmp_path, migrated_sqlite(tmp_path / "sched.db"))
    assert cli("task", "create", "job", "echo hi").exit_code == 0
    return cli


@pytest.fixture
def db(cli: Cli) -> Iterator[Database]:
    assert cli.db_url is not None
    database = create_database(cli.db_url)
    yield database
    database.dispose()


def play_worker(db: Database, run_id: int, text: str, status: str, code: int | None) -> None:
    """What a worker would do: start the run, write output in two chunks, end it."""
    with db.session() as session:
        session.execute(
            sa.update(runs).where(runs.c.id == run_id).values(status="running", started_at=utcnow())
        )
    half = len(text) // 2
    for seq, (offset, piece) in enumerate(((0, text[:half]), (half, text[half:]))):
        time.sleep(0.15)
        batch = output.OutputBatch([output.Chunk(seq, offset, piece)], None, offset + len(piece))
        with db.session() as session:
            output.store(session, run_id, batch)
    with db.session() as session:
        session.execute(
            sa.update(runs)
            .where(runs.c.id == run_id)
            .values(status=status, exit_code=code, completed_at=utcnow(), execution_time=0.3)
        )


def wait_for_run(db: Database, run_id: int, timeout: float = 30.0) -> None:
    """Until schedctl has created the run (a loaded machine may take longer than 0.3 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as session:
            if session.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first():
                return
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} was never created")


def in_background(db: Database, run_id: int, text: str, status: str, code: int | None) -> None:
    def go() -> None:
        wait_for_run(db, run_id)
        time.sleep(0.3)  # after schedctl has started waiting
        play_worker(db, run_id, text, status, code)

    threading.Thread(target=go, daemon=True).start()


def one_line_of(result: Result) -> str:
    """The error line: status lines may precede it on stderr."""
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")][-1]


def test_trigger_without_wait_shows_the_pending_run(cli: Cli) -> None:
    run = cli.json("task", "trigger", "job", "--arg", "x")
    assert (run["status"], run["trigger"], run["arguments"]) == ("pending", "manual", ["x"])


def test_trigger_wait_exits_with_the_runs_exit_code(cli: Cli, db: Database) -> None:
    in_background(db, 1, "hello\n", "failed", 3)
    result = cli("task", "trigger", "job", "--wait", "--timeout", "60")
    assert result.exit_code == 3, result.output
    assert result.stdout == "run 1 failed (exit 3) in 0.30s\n"
    assert "run 1: pending" in result.stderr  # plain status lines off a terminal


def test_trigger_follow_streams_the_output_to_stdout(cli: Cli, db: Database) -> None:
    in_background(db, 1, "first line\nsecond line\n", "completed", 0)
    result = cli("task", "trigger", "job", "--follow", "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert result.stdout == "first line\nsecond line\n"
    assert "run 1 completed (exit 0)" in result.stderr


@pytest.mark.parametrize(("status", "code"), [("timeout", 124), ("cancelled", 125), ("lost", 75)])
def test_trigger_wait_names_how_a_run_ended(cli: Cli, db: Database, status: str, code: int) -> None:
    in_background(db, 1, "x\n", status, None)
    result = cli("-o", "json", "task", "trigger", "job", "--wait", "--timeout", "60")
    assert result.exit_code == code
    assert json.loads(result.stdout)["status"] == status


def test_trigger_wait_timeout_stops_waiting_with_124(cli: Cli) -> None:
    started = time.monotonic()
    result = cli("task", "trigger", "job", "--wait", "--timeout", "0.5")
    assert result.exit_code == 124
    assert "still pending after 0.5s" in one_line_of(result)
    assert time.monotonic() - started < 5


def test_follow_and_json_together_are_a_usage_error(cli: Cli) -> None:
    result = cli("-o", "json", "task", "trigger", "job", "--follow")
    assert result.exit_code == 2
    assert "--follow" in one_line(result)
    assert cli.json("run", "list")["total"] == 0  # refused before anything was started


def test_spinner_on_a_terminal(cli: Cli, db: Database) -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    env = Environment(stdout=stdout, stderr=stderr, stdout_isatty=True, stderr_isatty=True)
    in_background(db, 1, "x\n", "completed", 0)
    result = cli("task", "trigger", "job", "--wait", "--timeout", "60", obj=env)
    assert result.exit_code == 0
    assert "run 1 of job" in stderr.getvalue()  # the spinner's label, drawn on the terminal
    assert "run 1 completed (exit 0)" in stdout.getvalue()


def test_run_logs_prints_the_output_and_json_gives_offsets(cli: Cli, db: Database) -> None:
    cli("task", "trigger", "job")
    play_worker(db, 1, "abc\ndef\n", "completed", 0)
    assert cli("run", "logs", "1").stdout == "abc\ndef\n"
    assert cli.json("run", "logs", "1", "--offset", "4") == {
        "data": "def\n",
        "offset": 4,
        "next_offset": 8,
        "finished": True,
    }


def test_run_logs_follow_ends_when_the_run_ends(cli: Cli, db: Database) -> None:
    cli("task", "trigger", "job")
    in_background(db, 1, "one\ntwo\n", "completed", 0)
    result = cli("-o", "json", "run", "logs", "1", "-f")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert "".join(piece["data"] for piece in lines) == "one\ntwo\n"
    assert lines[-1]["finished"] is True


def test_cancel_a_pending_run_then_cancel_again_is_a_conflict(cli: Cli) -> None:
    cli("task", "trigger", "job")
    assert cli("run", "cancel", "1").stdout == "run 1: cancelled\n"
    again = cli("run", "cancel", "1")
    assert again.exit_code == 6
    assert "already ended" in one_line(again)


def test_retry_starts_a_new_manual_run(cli: Cli) -> None:
    cli("task", "trigger", "job")
    cli("run", "cancel", "1")
    new = cli.json("run", "retry", "1")
    assert (new["id"], new["status"], new["trigger"]) == (2, "pending", "manual")


def test_run_list_filters_and_shows_task_names(cli: Cli) -> None:
    cli("task", "trigger", "job")
    cli("task", "trigger", "job")
    cli("run", "cancel", "2")
    assert [r["id"] for r in cli.json("run", "list", "--status", "cancelled")["items"]] == [2]
    assert cli.json("run", "list", "--since", "1h")["total"] == 2
    assert cli.json("run", "list", "--task", "job", "--since", "2999-01-01")["total"] == 0
    table = cli("run", "list").stdout.splitlines()
    assert table[1].split()[:3] == ["2", "job", "cancelled"]


def test_bad_since_is_invalid_input(cli: Cli) -> None:
    result = cli("run", "list", "--since", "yesterday")
    assert result.exit_code == 65
    assert "--since" in one_line(result)


def test_unknown_run_is_not_found(cli: Cli) -> None:
    result = cli("run", "show", "99")
    assert (result.exit_code, one_line(result)) == (3, "error: run 99 not found")


def test_top_once_shows_the_queue_and_failures(cli: Cli, db: Database) -> None:
    cli("task", "trigger", "job")
    cli("task", "trigger", "job")
    play_worker(db, 2, "boom\n", "failed", 1)
    out = cli("top", "--once").stdout
    assert "running 0 · queue 1 · failures (24h) 1" in out
    assert "Recent failures (1 in 24h)" in out
    snapshot = cli.json("top")
    assert (snapshot["queue_depth"], snapshot["failures"][0]["id"]) == (1, 2)
    assert snapshot["task_names"] == {"1": "job"}
