"""Helpers for the schedctl tests: run the CLI in-process (CliRunner) on a temp database."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from schedctl.app import app
from schedctl.env import Environment
from schedd.db import create_database, migrate

# Variables of the developer's shell that would change what schedctl does.
_LEAKY = ("SCHED_API", "SCHED_TOKEN", "SCHED_DEBUG", "DATABASE_URL", "SCHEDD_CONFIG", "NO_COLOR")


def clean_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Overrides for CliRunner: sched's variables unset, HOME and XDG dirs under ``home``."""
    env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("SCHEDD_")}
    env.update(dict.fromkeys(_LEAKY))
    env.update(
        {
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "COLUMNS": "200",
        }
    )
    env.update(extra or {})
    return env


_TEMPLATE: dict[str, Path] = {}


def migrated_sqlite(path: Path) -> str:
    """A migrated SQLite database at ``path`` (a copy of one migrated once per session)."""
    template = _TEMPLATE.get("path")
    if template is None:
        folder = tempfile.mkdtemp(prefix="schedctl-template-")
        atexit.register(shutil.rmtree, folder, True)
        template = Path(folder) / "sched.db"
        database = create_database(f"sqlite:///{template}")
        migrate(database)
        database.dispose()  # the last connection to close checkpoints the WAL into the file
        _TEMPLATE["path"] = template
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@dataclass
class Cli:
    """schedctl bound to one temp home (and, for direct mode, one database URL)."""

    home: Path
    db_url: str | None = None

    def __call__(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        obj: Environment | None = None,
        direct: bool = True,
        input: str | None = None,
    ) -> Result:
        argv = (["--db", self.db_url] if direct and self.db_url else []) + list(args)
        runner = CliRunner()
        extra: dict[str, Any] = {} if obj is None else {"obj": obj}
        return runner.invoke(
            app, argv, env=clean_env(self.home, env), catch_exceptions=False, input=input, **extra
        )

    def json(self, *args: str, **kwargs: Any) -> Any:
        result = self("-o", "json", *args, **kwargs)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


def one_line(result: Result) -> str:
    """The single stderr line of a failed command (and no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]
