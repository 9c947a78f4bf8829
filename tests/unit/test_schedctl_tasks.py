"""`schedctl task` parsing and rendering, in --db mode on a temporary SQLite database."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.schedctlkit import Cli, migrated_sqlite, one_line


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, migrated_sqlite(tmp_path / "sched.db"))


def test_create_takes_every_field_as_a_flag(cli: Cli) -> None:
    cli("task", "create", "extract", "true")
    task = cli.json(
        "task", "create", "report", "/opt/report.py",
        "--executor", "python", "--schedule", "0 30 2 * * *", "--tz", "Europe/Berlin",
        "--arg", "--day", "--arg", "today", "--tag", "daily", "--tag", "db",
        "--priority", "high", "--retries", "3", "--retry-delay", "2.5", "--timeout", "600",
        "--depends-on", "extract", "--metadata", '{"owner": "ops"}', "--concurrency", "forbid",
        "--misfire", "skip", "--description", "Daily report", "--task-type", "reports",
        "--env", "REPORT_DIR=/srv/r", "--env", "EMPTY=", "--run-as", "reports:staff",
        "--working-dir", "/srv/r", "--memory-max", "256", "--cpu-max", "0.5",
        "--pids-max", "64", "--paused", "--notify", '{"expect_every": "25h"}',
    )  # fmt: skip
    assert {k: v for k, v in task.items() if k not in ("id", "created_at", "updated_at")} == {
        "name": "report",
        "description": "Daily report",
        "task_type": "reports",
        "executor": "python",
        "command": "/opt/report.py",
        "arguments": ["--day", "today"],
        "schedule": "0 30 2 * * *",
        "timezone": "Europe/Berlin",
        "priority": "high",
        "retry_count": 3,
        "retry_delay_seconds": 2.5,
        "timeout_seconds": 600,
        "status": "paused",
        "concurrency_policy": "forbid",
        "misfire_policy": "skip",
        "last_run_at": None,
        "next_run_at": None,
        "dependencies": [1],
        "tags": ["daily", "db"],
        "metadata": {"owner": "ops"},
        "environment": {"REPORT_DIR": "/srv/r", "EMPTY": ""},
        "run_as": "reports:staff",
        "working_dir": "/srv/r",
        "memory_max_mb": 256,
        "cpu_max": 0.5,
        "pids_max": 64,
        "notify": {"expect_every": "25h"},
        # /opt is on this host, /opt/report.py is not: a warning, not an error.
        "warnings": [
            "python script /opt/report.py does not exist: runs of this task will fail "
            "until it is there"
        ],
    }


def test_a_task_is_found_by_id_or_by_name(cli: Cli) -> None:
    cli("task", "create", "backup", "echo hi")
    assert cli.json("task", "show", "1")["name"] == "backup"
    assert cli.json("task", "show", "backup")["id"] == 1


def test_update_changes_only_the_fields_given(cli: Cli) -> None:
    cli("task", "create", "backup", "echo hi", "--schedule", "@daily", "--tag", "a")
    before = cli.json("task", "show", "backup")
    after = cli.json("task", "update", "backup", "--retries", "2", "--no-schedule")
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"retry_count", "schedule", "next_run_at", "updated_at"}
    assert after["schedule"] is None and after["tags"] == ["a"]


def test_update_without_a_field_is_a_usage_error(cli: Cli) -> None:
    cli("task", "create", "backup", "echo hi")
    result = cli("task", "update", "backup")
    assert result.exit_code == 2
    assert "nothing to change" in one_line(result)


def test_a_flag_and_its_no_flag_together_are_a_usage_error(cli: Cli) -> None:
    cli("task", "create", "backup", "echo hi")
    result = cli("task", "update", "backup", "--tag", "x", "--no-tags")
    assert result.exit_code == 2
    assert "--no-tag" in one_line(result)


def test_unknown_task_is_one_line_and_exit_3(cli: Cli) -> None:
    result = cli("task", "show", "nope")
    assert result.exit_code == 3
    assert one_line(result) == "error: task 'nope' not found"
    assert result.stdout == ""


def test_bad_cron_is_one_line_naming_the_field_and_exit_65(cli: Cli) -> None:
    result = cli("task", "create", "bad", "true", "--schedule", "0 0 25 * * *")
    assert result.exit_code == 65
    line = one_line(result)
    assert line.startswith("error: schedule: cron expression '0 0 25 * * *'")  # as the API says
    assert "hour field '25' is out of range" in line
    assert cli.json("task", "list")["total"] == 0


def test_bad_metadata_is_invalid_input(cli: Cli) -> None:
    result = cli("task", "create", "t", "true", "--metadata", "[1, 2]")
    assert result.exit_code == 65
    assert "--metadata" in one_line(result)


def test_unknown_option_is_a_one_line_usage_error(cli: Cli) -> None:
    result = cli("task", "create", "t", "true", "--shedule", "@daily")
    assert result.exit_code == 2
    line = one_line(result)
    assert "--shedule" in line and "schedctl task create --help" in line


def test_duplicate_name_is_a_conflict(cli: Cli) -> None:
    cli("task", "create", "t", "true")
    result = cli("task", "create", "t", "true")
    assert result.exit_code == 6
    assert "already exists" in one_line(result)


def test_delete_of_a_dependency_is_refused_unless_forced(cli: Cli) -> None:
    cli("task", "create", "up", "true")
    cli("task", "create", "down", "true", "--depends-on", "up")
    refused = cli("task", "delete", "up")
    assert refused.exit_code == 6
    assert "'down'" in one_line(refused)
    assert cli.json("task", "delete", "up", "--force") == {"id": 1, "name": "up", "deleted": True}
    assert [t["name"] for t in cli.json("task", "list")["items"]] == ["down"]


def test_list_json_is_the_api_page(cli: Cli) -> None:
    for name in ("a", "b", "c"):
        cli("task", "create", name, "true", "--tag", "x" if name != "b" else "y")
    page = cli.json("task", "list", "--tag", "x", "--size", "1")
    assert set(page) == {"items", "total", "page", "size"}
    assert (page["total"], page["page"], page["size"]) == (2, 1, 1)
    assert [t["name"] for t in page["items"]] == ["a"]


def test_list_table_shows_columns_and_a_footer(cli: Cli) -> None:
    cli("task", "create", "nightly", "true", "--schedule", "0 0 2 * * *", "--tz", "Asia/Tokyo")
    out = cli("task", "list").stdout
    lines = out.splitlines()
    assert lines[0].split() == [
        "ID",
        "NAME",
        "STATUS",
        "SCHEDULE",
        "NEXT",
        "RUN",
        "LAST",
        "RUN",
        "TAGS",
    ]
    assert "0 0 2 * * * (Asia/Tokyo)" in lines[1]
    assert lines[-1] == "1 task"
    assert all(line == line.rstrip() for line in lines)


def test_names_are_shown_as_written_not_as_markup(cli: Cli) -> None:
    cli("task", "create", "[bold]x[/bold]", "true", "--tag", "[prod]")
    out = cli("task", "list").stdout
    assert "[bold]x[/bold]" in out and "[prod]" in out


def test_pause_and_resume_report_the_status(cli: Cli) -> None:
    cli("task", "create", "t", "true", "--schedule", "@hourly")
    assert cli("task", "pause", "t").stdout == "task 1 (t) is paused\n"
    assert cli.json("task", "show", "t")["next_run_at"] is None
    resumed = cli("task", "resume", "t").stdout
    assert resumed.startswith("task 1 (t) is active; next run ")


def test_next_lists_fire_times(cli: Cli) -> None:
    cli("task", "create", "t", "true", "--schedule", "0 0 12 * * *")
    times = cli.json("task", "next", "t", "-n", "3")["times"]
    assert len(times) == 3 and all(t.endswith("T12:00:00Z") for t in times)


def test_next_shows_the_task_zone_local_time_and_utc(cli: Cli) -> None:
    cli("task", "create", "t", "true", "--schedule", "0 30 2 * * *", "--tz", "Europe/Berlin")
    times = cli.json("task", "next", "t", "-n", "2")["times"]
    lines = cli("task", "next", "t", "-n", "2", env={"TZ": "America/New_York"}).stdout
    header, first = lines.splitlines()[:2]
    assert header.split() == [
        "#", "TASK", "ZONE", "(Europe/Berlin)", "LOCAL", "(America/New_York)", "UTC", "IN"
    ]  # fmt: skip
    utc = datetime.fromisoformat(times[0].replace("Z", "+00:00"))
    berlin = utc.astimezone(ZoneInfo("Europe/Berlin"))
    new_york = utc.astimezone(ZoneInfo("America/New_York"))
    assert f"{berlin:%Y-%m-%d} 02:30:00 {berlin:%z}"[:-2] in first
    assert f"{new_york:%Y-%m-%d %H:%M:%S} {new_york.tzname()}"[:10] in first
    assert new_york.tzname() in first and berlin.tzname() in first
    assert f"{utc:%Y-%m-%d %H:%M:%S}Z" in first
    # The operator in the task's zone, or in UTC, gets no repeated column.
    same = cli("task", "next", "t", "-n", "1", env={"TZ": "Europe/Berlin"}).stdout
    assert same.splitlines()[0].split() == ["#", "TASK", "ZONE", "(Europe/Berlin)", "UTC", "IN"]
    utc_only = cli("task", "create", "u", "true", "--schedule", "@daily")
    assert utc_only.exit_code == 0
    header = cli("task", "next", "u", "-n", "1", env={"TZ": "UTC"}).stdout.splitlines()[0]
    assert header.split() == ["#", "UTC", "IN"]


def test_show_lists_dependencies_by_name(cli: Cli) -> None:
    cli("task", "create", "extract", "true")
    cli("task", "create", "load", "true")
    cli("task", "create", "report", "true", "--depends-on", "extract", "--depends-on", "load")
    shown = cli("task", "show", "report").stdout
    assert re.search(r"depends on\s+extract \(1\), load \(2\)\n", shown), shown
    assert cli.json("task", "show", "report")["dependencies"] == [1, 2]  # JSON: the API's


def test_debug_shows_the_traceback(cli: Cli) -> None:
    result = cli("--debug", "task", "show", "nope")
    assert result.exit_code == 3
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == "error: task 'nope' not found"


def test_api_and_db_on_the_command_line_exclude_each_other(cli: Cli) -> None:
    result = cli("--api", "http://127.0.0.1:9", "task", "list")
    assert result.exit_code == 2
    assert "--api and --db" in one_line(result)


def test_a_missing_database_file_is_unavailable_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    result = Cli(tmp_path, f"sqlite:///{missing}")("task", "list")
    assert result.exit_code == 69
    assert str(missing) in one_line(result)
    assert not missing.exists()


def test_database_url_variable_selects_direct_mode(cli: Cli) -> None:
    assert cli.db_url is not None
    result = cli("-o", "json", "task", "list", direct=False, env={"DATABASE_URL": cli.db_url})
    assert result.exit_code == 0, result.output
    assert '"total": 0' in result.stdout


def test_env_flags_replace_and_clear_the_task_environment(cli: Cli) -> None:
    cli("task", "create", "backup", "env", "--env", "A=1")
    assert cli.json("task", "update", "backup", "--env", "B=2")["environment"] == {"B": "2"}
    assert cli.json("task", "update", "backup", "--no-env")["environment"] == {}
    result = cli("task", "update", "backup", "--env", "novalue")
    assert result.exit_code == 2 and "NAME=VALUE" in one_line(result)
    bad = cli("task", "update", "backup", "--env", "SCHED_RUN_ID=1")
    assert bad.exit_code != 0 and "environment" in one_line(bad)


@pytest.mark.parametrize(
    ("flag", "value", "field"),
    [("--run-as", "bad user", "run_as"), ("--working-dir", "relative/dir", "working_dir")],
)
def test_bad_isolation_fields_are_one_line_naming_the_field(
    cli: Cli, flag: str, value: str, field: str
) -> None:
    result = cli("task", "create", "backup", "true", flag, value)
    assert result.exit_code != 0 and field in one_line(result)


def test_no_limits_clears_every_limit(cli: Cli) -> None:
    cli("task", "create", "backup", "true", "--memory-max", "64", "--pids-max", "8")
    cleared = cli.json("task", "update", "backup", "--no-limits")
    assert (cleared["memory_max_mb"], cleared["cpu_max"], cleared["pids_max"]) == (None,) * 3
    bad = cli("task", "update", "backup", "--memory-max", "2")
    assert bad.exit_code != 0 and "memory_max_mb" in one_line(bad)


def test_create_warns_on_stderr_about_a_script_that_is_not_there(cli: Cli, tmp_path: Path) -> None:
    result = cli(
        "task", "create", "seed", "python process_data.py", "--executor", "python",
        "--working-dir", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == (
        f"warning: python script process_data.py does not exist in {tmp_path}: "
        "runs of this task will fail until it is there"
    )
    assert result.stdout.startswith("created task 1 (seed)")
