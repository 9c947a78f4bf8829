"""What the CLIs import: `schedd --help` and `schedctl --help` no database, migration or
web layer; `schedctl` commands only the layers their mode needs.

Shell scripts call both in loops; printing help must not pay for SQLAlchemy, Alembic,
FastAPI or pydantic (bench/startup.py measures the time; this checks the structure).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from schedd.db import create_database, migrate

HEAVY = (
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlmodel",
    "psycopg",
    "opentelemetry",
    "google",
)

PROBE = """
import json, sys
from {module} import {app}
try:
    {app}(["--help"], prog_name="{prog}")
except SystemExit as exc:
    assert exc.code == 0, exc.code
heavy = sorted(m.split(".")[0] for m in sys.modules if m.split(".")[0] in {heavy!r})
print(json.dumps(sorted(set(heavy))))
"""


@pytest.mark.parametrize(
    ("module", "app", "prog"),
    [("schedd.cli", "app", "schedd"), ("schedctl.app", "app", "schedctl")],
)
def test_help_imports_no_database_or_web_layer(module: str, app: str, prog: str) -> None:
    code = PROBE.format(module=module, app=app, prog=prog, heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
    assert json.loads(done.stdout.splitlines()[-1]) == []


COMMAND_PROBE = """
import json, runpy, sys
sys.argv = {argv!r}
try:
    runpy.run_module("schedctl", run_name="__main__")
except SystemExit:
    pass
print(json.dumps(sorted({{m if {full!r} else m.split(".")[0] for m in sys.modules}})))
"""


def _imported_by(argv: list[str], *, full: bool = False) -> set[str]:
    """The top-level packages (or with ``full`` every module) a command imports."""
    code = COMMAND_PROBE.format(argv=["schedctl", *argv], full=full)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_a_command_through_the_api_imports_no_database_layer() -> None:
    """`schedctl task list` against an API (here one that is not there: the imports
    happen before the request) loads the HTTP client, not the server's layers."""
    imported = _imported_by(["--api", "http://127.0.0.1:9", "--token", "x", "task", "list"])
    assert "httpx" in imported  # the probe ran the command
    assert imported.isdisjoint({*HEAVY, "mako", "jwt"})


def test_a_direct_command_imports_no_migration_web_or_postgres_layer(tmp_path: Path) -> None:
    """`schedctl --db sqlite:///... task list` needs SQLAlchemy and the services, but
    checking the schema reads the version table without Alembic, and a SQLite database
    never loads psycopg nor the web server's layers."""
    url = f"sqlite:///{tmp_path / 'sched.db'}"
    db = create_database(url)
    migrate(db)
    db.dispose()
    imported = _imported_by(["--db", url, "task", "list"])
    assert "sqlalchemy" in imported  # the probe ran the command
    forbidden = {"alembic", "mako", "psycopg", "fastapi", "starlette", "uvicorn"}
    assert imported.isdisjoint(forbidden), imported & forbidden
    # The alert channels and the broker registry load in the commands that use them.
    modules = _imported_by(["--db", url, "task", "list"], full=True)
    assert "schedd.services.tasks" in modules
    lazy = {"schedd.services.alerts", "schedd.alerts.channels", "schedd.brokers.registry"}
    assert modules.isdisjoint(lazy), modules & lazy


def test_schedctl_help_imports_no_command_nor_rich() -> None:
    """`schedctl --help` lists the commands from their summaries: it imports none of
    them, nor Rich, httpx or pydantic (which they and Typer's coercion pull in)."""
    imported = _imported_by(["--help"])
    assert "typer" in imported  # the probe ran
    assert imported.isdisjoint({*HEAVY, "rich", "httpx", "pydantic"}), imported
    done = subprocess.run(
        [sys.executable, "-c", "import sys, schedctl.app; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "schedctl.commands.task" not in done.stdout


@pytest.mark.parametrize("width", [40, 60, 80, 200])
def test_the_root_help_summaries_are_the_commands_own(width: int) -> None:
    """Each summary in LAZY_COMMANDS lists as the loaded command's own help would."""
    from typer.core import TyperCommand

    from schedctl.app import GIVEN_SHORT_HELP, LAZY_COMMANDS, load_command

    for name, (_, _, _, summary) in LAZY_COMMANDS.items():
        loaded = load_command(name)
        short = summary if name in GIVEN_SHORT_HELP else None
        stub = TyperCommand(name, help=summary, short_help=short)
        assert stub.get_short_help_str(width) == loaded.get_short_help_str(width), name
        assert loaded.short_help == short, name


def test_http_client_leaves_out_httpx_command_line() -> None:
    """httpx's own CLI (Click, Rich, Pygments) is not imported by a command over the API."""
    imported = _imported_by(["--api", "http://127.0.0.1:9", "--token", "x", "task", "list"])
    assert "httpx" in imported
    assert "pygments" not in imported
