"""The shell executor: /bin/sh -c COMMAND with the task's arguments as $1..$n."""

from __future__ import annotations

import os
import pwd
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schedd.config import WorkerSettings
from schedd.executors.base import Ending, Outcome, StopSignal
from schedd.executors.shell import ShellExecutor
from tests.workerkit import Sink, spec


def run(
    command: str, *arguments: str, settings: WorkerSettings | None = None, **fields: Any
) -> tuple[Outcome, str]:
    sink = Sink()
    executor = ShellExecutor(settings or WorkerSettings(kill_grace_seconds=1))
    outcome = executor.execute(spec(command, *arguments, **fields), sink, StopSignal())
    return outcome, sink.text


HOSTILE = [
    "; touch {marker}",
    "$(touch {marker})",
    "`touch {marker}`",
    "x\ntouch {marker}",
    "-n",
    "--help; touch {marker}",
    "' ; touch {marker} ; '",
    '" && touch {marker} && "',
    "*",
    "| touch {marker}",
]


@pytest.mark.parametrize("template", HOSTILE)
def test_an_argument_arrives_unchanged_in_dollar_one_and_never_runs(
    template: str, tmp_path: Path
) -> None:
    marker = tmp_path / "x"
    argument = template.format(marker=marker)
    settings = WorkerSettings(working_directory=str(tmp_path))
    outcome, output = run('printf "%s" "$1"', argument, settings=settings)
    assert outcome.ending is Ending.completed
    assert output == argument
    assert not marker.exists()


def test_task_name_is_dollar_zero_and_every_argument_is_positional() -> None:
    outcome, output = run('echo "$0|$#|$1|$2|$3"', "a b", "", "c")
    assert outcome.ending is Ending.completed
    assert output == "nightly-report|3|a b||c\n"


def test_a_nonzero_exit_fails_the_run_with_the_status_in_a_sentence() -> None:
    outcome, _ = run("exit 3")
    assert (outcome.ending, outcome.exit_code) == (Ending.failed, 3)
    assert outcome.error == "exited with status 3"


def test_exit_zero_completes_with_exit_code_and_duration() -> None:
    outcome, _ = run("sleep 0.1")
    assert (outcome.ending, outcome.exit_code, outcome.error) == (Ending.completed, 0, None)
    assert 0.1 <= outcome.duration < 5


def test_a_process_killed_by_a_signal_fails_naming_the_signal() -> None:
    outcome, _ = run("kill -9 $$")
    assert (outcome.ending, outcome.exit_code) == (Ending.failed, 137)
    assert outcome.error == "killed by signal 9 (SIGKILL)"


def test_stdout_and_stderr_are_merged_in_order() -> None:
    outcome, output = run("echo one; echo two >&2; echo three")
    assert outcome.ending is Ending.completed
    assert output == "one\ntwo\nthree\n"


# What sh sets by itself in any environment.
SHELL_OWN = {"PWD", "SHLVL", "_", "OLDPWD"}


def test_children_get_only_the_allowlist_and_the_sched_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secret@db/sched")
    monkeypatch.setenv("JWT_SECRET", "s" * 40)
    monkeypatch.setenv("SCHEDD_WORKER__ID", "w1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws")
    monkeypatch.setenv("PGPASSWORD", "pg")
    monkeypatch.setenv("LC_TIME", "C")
    monkeypatch.setenv("TZ", "Europe/Berlin")
    scheduled = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    outcome, output = run("env", attempt=2, scheduled_for=scheduled)
    assert outcome.ending is Ending.completed
    env = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    assert env["SCHED_RUN_ID"] == "7"
    assert env["SCHED_TASK_ID"] == "3"
    assert env["SCHED_TASK_NAME"] == "nightly-report"
    assert env["SCHED_SCHEDULED_FOR"] == "2026-03-01T02:00:00Z"
    assert env["SCHED_ATTEMPT"] == "2"
    assert (env["LC_TIME"], env["TZ"]) == ("C", "Europe/Berlin")
    me = pwd.getpwuid(os.geteuid())
    assert (env["HOME"], env["USER"], env["LOGNAME"]) == (me.pw_dir, me.pw_name, me.pw_name)
    allowed = {"PATH", "LANG", "LANGUAGE", "TZ", "HOME", "USER", "LOGNAME", "SHELL"}
    unexpected = {
        name for name in env.keys() - allowed - SHELL_OWN if not name.startswith(("LC_", "SCHED_"))
    }
    assert unexpected == set()


def test_passthrough_names_and_the_task_environment_reach_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("NOT_LISTED", "hidden")
    settings = WorkerSettings(env_passthrough=["HTTPS_PROXY"])
    task_env = {"REPORT_DIR": "/srv/reports", "PATH": "/opt/tool/bin:/usr/bin:/bin"}
    outcome, output = run("env", settings=settings, task_environment=task_env)
    assert outcome.ending is Ending.completed
    env = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    assert env["REPORT_DIR"] == "/srv/reports"
    assert env["PATH"] == "/opt/tool/bin:/usr/bin:/bin"
    assert "NOT_LISTED" not in env


def test_the_configured_working_directory_is_used(tmp_path: Path) -> None:
    outcome, output = run("pwd", settings=WorkerSettings(working_directory=str(tmp_path)))
    assert outcome.ending is Ending.completed
    assert Path(output.strip()).resolve() == tmp_path.resolve()


def test_a_missing_working_directory_fails_the_run_with_the_reason(tmp_path: Path) -> None:
    settings = WorkerSettings(working_directory=str(tmp_path / "gone"))
    outcome, _ = run("true", settings=settings)
    assert outcome.ending is Ending.failed
    assert outcome.error is not None and "could not start" in outcome.error
