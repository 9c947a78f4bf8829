"""`schedd --config FILE` and `schedd config check FILE` leave reading to the config
loader, so an unreadable file is one config error line (exit 78), never a usage error
box (exit 2) that systemd would restart on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from schedd import configfile
from schedd.cli import app

runner = CliRunner()


@pytest.fixture
def unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file whose reading is refused (as for a non-root user on a 0600 file;
    the tests run as root in CI, which reads anything)."""
    path = tmp_path / "schedd.toml"
    path.write_text("[api]\nport = 8080\n")
    real_open = Path.open

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        if self == path:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    real_access = os.access

    def no_access(target: object, mode: int, *args: object, **kwargs: object) -> bool:
        if Path(str(target)) == path:
            return False
        return real_access(target, mode, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(configfile.Path, "open", refuse)
    monkeypatch.setattr(os, "access", no_access)  # what click's readable check asks
    return path


@pytest.mark.parametrize(
    "args",
    [
        ("--config", "{}", "config", "show"),
        ("run", "--config", "{}"),
        ("config", "check", "{}"),
    ],
)
def test_an_unreadable_config_file_is_one_config_error(
    unreadable: Path, args: tuple[str, ...]
) -> None:
    result = runner.invoke(app, [a.format(unreadable) for a in args])
    assert result.exit_code == 78, result.output
    assert result.output.strip().splitlines() == [
        f"schedd: error: {unreadable}: permission denied reading the config file"
    ]


def test_role_help_names_the_setting() -> None:
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert "Default: the daemon.roles setting, which is all three." in result.output
