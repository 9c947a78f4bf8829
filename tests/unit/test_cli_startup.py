"""`schedd --help` and `schedctl --help` import no database, migration or web layer.

Shell scripts call both in loops; printing help must not pay for SQLAlchemy, Alembic,
FastAPI or pydantic (bench/startup.py measures the time; this checks the structure).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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
