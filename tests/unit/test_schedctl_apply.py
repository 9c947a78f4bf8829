"""`schedctl apply` / `export`: task files planned against the server, then applied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.schedctlkit import Cli, migrated_sqlite, one_line

TASKS = """\
[tasks.extract]
executor = "shell"
command = "echo extract"
schedule = "0 0 2 * * *"
timezone = "Europe/Berlin"
tags = ["etl"]

[tasks.load]
executor = "python"
command = "/opt/load.py"
arguments = ["--fast"]
dependencies = ["extract"]
retry_count = 2
tags = ["etl"]
metadata = { owner = "data" }

[tasks."数据处理任务"]
executor = "shell"
command = "true"
"""


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, migrated_sqlite(tmp_path / "sched.db"))


def write(tmp_path: Path, text: str, name: str = "tasks.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_apply_creates_then_a_second_apply_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, TASKS)
    first = cli.json("apply", "-f", path)
    assert first["created"] == ["extract", "数据处理任务", "load"]  # upstream before downstream
    assert first["applied"] is True
    load = cli.json("task", "show", "load")
    assert load["dependencies"] == [cli.json("task", "show", "extract")["id"]]
    assert (load["arguments"], load["metadata"], load["retry_count"]) == (
        ["--fast"],
        {"owner": "data"},
        2,
    )
    second = cli("apply", "-f", path)
    assert second.exit_code == 0
    assert f"{path}: 0 to create, 0 to change, 3 unchanged, 0 to delete" in second.stdout
    assert "no changes" in second.stderr


def test_the_plan_names_the_changed_fields(cli: Cli, tmp_path: Path) -> None:
    cli("apply", "-f", write(tmp_path, TASKS))
    edited = TASKS.replace('"0 0 2 * * *"', '"0 0 3 * * *"').replace("retry_count = 2\n", "")
    plan = cli.json("apply", "-f", write(tmp_path, edited), "--dry-run")
    assert plan["changed"] == [
        {"name": "extract", "fields": ["schedule"]},
        {"name": "load", "fields": ["retry_count"]},
    ]
    assert plan["applied"] is False
    assert cli.json("task", "show", "extract")["schedule"] == "0 0 2 * * *"  # dry run
    out = cli("apply", "-f", write(tmp_path, edited)).stdout
    assert "~ change    extract (schedule)" in out and "~ changed load" in out
    assert cli.json("task", "show", "load")["retry_count"] == 0  # a removed line resets it


def test_prune_deletes_what_the_file_no_longer_names(cli: Cli, tmp_path: Path) -> None:
    cli("apply", "-f", write(tmp_path, TASKS))
    cli("task", "create", "manual", "true")
    smaller = TASKS.split("[tasks.load]")[0]
    kept = cli.json("apply", "-f", write(tmp_path, smaller))
    assert sorted(kept["not_in_file"]) == ["load", "manual", "数据处理任务"]
    assert kept["deleted"] == []
    only_etl = cli.json("apply", "-f", write(tmp_path, smaller), "--prune", "--tag", "etl")
    assert only_etl["deleted"] == ["load"]
    everything = cli.json("apply", "-f", write(tmp_path, smaller), "--prune")
    assert sorted(everything["deleted"]) == ["manual", "数据处理任务"]
    assert [t["name"] for t in cli.json("task", "list")["items"]] == ["extract"]


def test_unrelated_server_tasks_are_one_line_unless_verbose_or_prune(
    cli: Cli, tmp_path: Path
) -> None:
    for name in ("other-1", "other-2", "other-3"):
        cli("task", "create", name, "true")
    path = write(tmp_path, TASKS)
    plan = cli("apply", "-f", path, "--dry-run").stdout
    kept = [line for line in plan.splitlines() if "? keep" in line]
    assert kept == [
        "  ? keep      3 other tasks on the server, not in the file (-v lists them, --prune "
        "deletes them)"
    ]
    verbose = cli("apply", "-f", path, "--dry-run", "-v").stdout
    assert "  ? keep      other-2 (not in the file; --prune deletes it)" in verbose
    pruning = cli("apply", "-f", path, "--dry-run", "--prune", "--tag", "none").stdout
    assert "  ? keep      other-1 (not in the file; --prune deletes it)" in pruning


def test_a_paused_task_stays_paused_unless_the_file_says_otherwise(
    cli: Cli, tmp_path: Path
) -> None:
    cli("apply", "-f", write(tmp_path, TASKS))
    cli("task", "pause", "extract")
    assert cli.json("apply", "-f", write(tmp_path, TASKS))["changed"] == []
    active = TASKS.replace('tags = ["etl"]\n', 'tags = ["etl"]\nstatus = "active"\n', 1)
    assert cli.json("apply", "-f", write(tmp_path, active))["changed"] == [
        {"name": "extract", "fields": ["status"]}
    ]


def test_export_then_apply_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    cli("apply", "-f", write(tmp_path, TASKS))
    cli("task", "create", "extra", "true", "--priority", "high", "--task-type", "gpu")
    exported = cli("export").stdout
    assert exported.startswith("# sched task set")
    assert '[tasks."数据处理任务"]' in exported
    result = cli.json("apply", "-f", write(tmp_path, exported, "exported.toml"))
    assert (result["created"], result["changed"]) == ([], [])
    assert len(result["unchanged"]) == 4


def test_export_of_one_tag_keeps_dependencies_by_name(cli: Cli, tmp_path: Path) -> None:
    cli("apply", "-f", write(tmp_path, TASKS))
    document = json.loads(cli("-o", "json", "export", "--tag", "etl").stdout)
    assert sorted(document["tasks"]) == ["extract", "load"]
    assert document["tasks"]["load"]["dependencies"] == ["extract"]


GOOD = '[tasks.ok]\nexecutor = "shell"\ncommand = "true"\n\n'
SHELL = 'executor = "shell"\ncommand = "x"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD + "[tasks.a]\ncommand = \n", ":6:11: invalid TOML"),
        (GOOD + f"[tasks.a]\n{SHELL}retries = 3\n", ":5: task 'a': retries: unknown field"),
        (GOOD + f'[tasks.a]\n{SHELL}schedule = "61 * * * *"\n', ":5: task 'a': schedule: cron"),
        (GOOD + f'[tasks.a]\n{SHELL}timezone = "Mars/Base"\n', "timezone: unknown time zone"),
        (GOOD + f'[tasks.a]\n{SHELL}dependencies = ["b"]\n', "depends on 'b', which is neither"),
        (
            f'[tasks.a]\n{SHELL}dependencies = ["b"]\n[tasks.b]\n{SHELL}dependencies = ["a"]\n',
            ": dependency cycle a -> b -> a",
        ),
        ('name = "x"\n', ": unknown top-level key 'name'"),
        ("", ": no [tasks.<name>] tables"),
    ],
)
def test_a_bad_file_is_one_line_exit_65_and_changes_nothing(
    cli: Cli, tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    result = cli("apply", "-f", path)
    assert result.exit_code == 65, result.output
    line = one_line(result)
    assert line.startswith(f"error: {path}")
    assert expected in line
    assert result.stdout == ""
    assert cli.json("task", "list")["total"] == 0
