"""`schedctl cron next`: previews fire times locally; bad input is one line, exit 65."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from schedctl.commands import cron as cron_command

root = typer.Typer()
root.add_typer(cron_command.app, name="cron")
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(root, ["cron", *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_output_across_spring_forward() -> None:
    code, out, err = run(
        "next", "0 30 2 * * *", "--tz", "Europe/Berlin",
        "--after", "2025-03-29T00:00:00Z", "-n", "3", "--output", "json",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert json.loads(out) == [
        {"utc": "2025-03-29T01:30:00Z", "local": "2025-03-29T02:30:00+01:00"},
        {"utc": "2025-03-30T01:00:00Z", "local": "2025-03-30T03:00:00+02:00"},
        {"utc": "2025-03-31T00:30:00Z", "local": "2025-03-31T02:30:00+02:00"},
    ]


def test_table_output_shows_local_time_offset_abbreviation_and_utc() -> None:
    code, out, err = run(
        "next", "@daily", "--tz", "America/New_York", "--after", "2025-03-08T12:00:00Z", "-n", "2"
    )
    assert (code, err) == (0, "")
    assert "2025-03-09 00:00:00 -05:00 EST" in out
    assert "2025-03-09T05:00:00Z" in out
    assert "2025-03-10 00:00:00 -04:00 EDT" in out
    assert "2025-03-10T04:00:00Z" in out


def test_defaults_five_fire_times_from_now_in_utc() -> None:
    code, out, _ = run("next", "0 */5 * * * *", "--output", "json")
    assert code == 0
    fires = json.loads(out)
    assert len(fires) == 5
    assert all(f["utc"].endswith("Z") and f["local"].endswith("+00:00") for f in fires)
    assert [f["utc"] for f in fires] == sorted(f["utc"] for f in fires)


def test_after_without_offset_is_a_wall_time_in_the_zone() -> None:
    code, out, _ = run(
        "next", "0 0 9 * * *", "--tz", "Asia/Tokyo", "--after", "2025-01-01T08:00", "-o", "json"
    )
    assert code == 0
    assert json.loads(out)[0] == {
        "utc": "2025-01-01T00:00:00Z",
        "local": "2025-01-01T09:00:00+09:00",
    }


def test_count_is_honoured_up_to_1000() -> None:
    code, out, _ = run("next", "* * * * * *", "-n", "1000", "--output", "json")
    assert code == 0
    assert len(json.loads(out)) == 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["0 61 * * * *"], "minute field '61' is out of range 0-59"),
        (["@reboot"], "unsupported macro '@reboot'"),
        (["0 0 0 30 2 *"], "never match a real date"),
        (["x" * 5000], "too long"),
        (["@daily", "--tz", "Mars/Base"], "unknown time zone 'Mars/Base'"),
        (["@daily", "--after", "yesterday"], "--after 'yesterday' is not an ISO-8601 date-time"),
        (["@daily", "--after", "9999-12-31T00:00:00Z"], "no fire time"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_65(args: list[str], message: str) -> None:
    code, out, err = run("next", *args)
    assert code == cron_command.EXIT_INVALID_INPUT == 65
    assert out == ""
    assert err.startswith("error: ")
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_count_out_of_range_is_a_usage_error() -> None:
    code, _, err = run("next", "@daily", "-n", "0")
    assert code == 2
    assert "Traceback" not in err


def test_group_help_lists_next() -> None:
    code, out, _ = run("--help")
    assert code == 0
    assert "next" in out
