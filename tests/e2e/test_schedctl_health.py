"""`schedctl system health` against a real `schedd run` (embedded SQLite, the database
broker): over HTTP and with --db, the same JSON and the same exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.schedctlserver import running_schedd

pytestmark = pytest.mark.slow


def test_health_is_the_same_over_http_and_with_db(tmp_path: Path) -> None:
    with running_schedd(tmp_path) as server:
        over_http = server.ctl("-o", "json", "system", "health")
        direct = server.ctl("--db", server.db_url, "-o", "json", "system", "health")
    assert over_http.returncode == direct.returncode == 0, (over_http.stderr, direct.stderr)
    assert json.loads(direct.stdout) == json.loads(over_http.stdout)
    assert json.loads(direct.stdout)["broker"] == "ok"
