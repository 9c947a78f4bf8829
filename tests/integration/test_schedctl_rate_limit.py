"""schedctl against an API past its failed-authentication limit: one line naming the
wait, exit 7 (documented), no traceback."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from schedctl.exits import ExitStatus
from schedd.db import create_database, migrate
from tests.apikit import ApiEnv, api_env
from tests.proc import schedctl

WRONG = "scheduler_" + "w" * 32


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiEnv]:
    db = create_database(f"sqlite:///{tmp_path / 'sched.db'}")
    migrate(db)
    try:
        with api_env(db, tmp_path, api={"auth_failures_per_minute": 2}) as env:
            yield env
    finally:
        db.dispose()


def _ctl(api: ApiEnv, token: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED")}
    env["HOME"] = str(tmp_path)
    command = schedctl("--api", str(api.client.base_url), "--token", token, "task", "list")
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_a_429_exits_7_with_one_line_naming_the_wait(api: ApiEnv, tmp_path: Path) -> None:
    for _ in range(2):
        assert api.client.get("/api/tasks", headers=api.auth(WRONG)).status_code == 401
    refused = api.client.get("/api/tasks", headers=api.auth(WRONG))
    assert refused.status_code == 429
    wait = int(refused.headers["retry-after"])

    # Past the limit this address is refused even with a good key: that is the point.
    result = _ctl(api, api.admin_key, tmp_path)
    assert result.returncode == ExitStatus.RATE_LIMITED == 7, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: too many failed authentications")
    assert lines[0].endswith("s (HTTP 429)")
    named = re.search(r": retry after (\d+) s \(HTTP 429\)$", lines[0])
    assert named and 0 < int(named.group(1)) <= wait, lines[0]
    assert result.stdout == ""
