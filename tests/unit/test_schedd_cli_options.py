"""`schedd` options mean the same before and after the subcommand, or are a usage
error (64) saying where they go; never silently dropped."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from schedd.cli import app

runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("SCHEDD_CONFIG", "DATABASE_URL", "API_PORT", "JWT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    path = tmp_path / "schedd.toml"
    path.write_text("[api]\nport = 9123\n")
    return path


def test_config_before_or_after_config_show_is_the_same(config: Path) -> None:
    before = runner.invoke(app, ["-c", str(config), "config", "show"])
    after = runner.invoke(app, ["config", "show", "-c", str(config)])
    assert before.exit_code == 0, before.output
    assert "port = 9123" in before.output
    assert before.output == after.output


def test_config_before_run_is_read(config: Path) -> None:
    config.write_text("[api]\nport = 0\n")  # a bad value: the start must stop on it
    for args in (["-c", str(config), "run"], ["run", "-c", str(config)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 78, result.output
        assert "api.port" in result.output and str(config) in result.output


def test_config_before_migrate_is_read(config: Path) -> None:
    config.write_text("[database]\nurl = 'nosuch://x'\n")
    result = runner.invoke(app, ["-c", str(config), "migrate"])
    assert result.exit_code == 78, result.output
    assert "database.url" in result.output


def test_role_before_run_is_read(config: Path) -> None:
    result = runner.invoke(app, ["--role", "janitor", "run"])
    assert result.exit_code == 64
    assert "janitor" in result.output


def test_role_before_config_check_counts(config: Path) -> None:
    # The API role needs a JWT secret outside the embedded default: asking for it
    # before the subcommand must make the check ask for the secret too.
    config.write_text("[database]\nurl = 'postgresql://db.example/sched'\n")
    result = runner.invoke(app, ["-c", str(config), "--role", "api", "config", "check"])
    assert result.exit_code == 78, result.output
    assert "jwt" in result.output.lower()


@pytest.mark.parametrize("command", [["migrate"], ["config", "show"]])
def test_role_before_a_command_without_roles_is_a_usage_error(
    config: Path, command: list[str]
) -> None:
    result = runner.invoke(app, ["--role", "api", *command])
    assert result.exit_code == 64
    assert "--role does not apply" in result.output
    assert "schedd run" in result.output


def test_two_different_config_files_are_a_usage_error(config: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text("")
    result = runner.invoke(app, ["-c", str(config), "config", "show", "-c", str(other)])
    assert result.exit_code == 64
    assert "--config given twice" in result.output
