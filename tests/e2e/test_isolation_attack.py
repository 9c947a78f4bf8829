"""The attack of issue 18, replayed against a real `schedd run` (CI is root).

A key with only task.write tried to become admin: schedule a task that reads the
daemon's environment (/proc/$PPID/environ: the database password, the JWT secret) and
its data directory (admin.key, jwt.secret) and writes them where the key can read
them. Now: it cannot make or change anything that runs by itself, and even a task that
does run (triggered by someone allowed to) runs as `worker.run_as`, with an allowlisted
environment, and finds nothing to read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.schedctlserver import Server, running_schedd
from tests.userkit import system_user
from tests.workerkit import wait_until

DB_PASSWORD = "db-password-" + "p" * 24
LOOT = (
    'cat /proc/$PPID/environ | tr "\\0" "\\n"; '
    'cat "$DATA/admin.key" "$DATA/jwt.secret"; ls "$DATA"; '
    'echo "uid=$(id -u)"; env'
)


@pytest.fixture(scope="module")
def attacked() -> Iterator[tuple[Server, int]]:
    with system_user("schedatk") as user:
        home = Path(tempfile.mkdtemp(prefix="sched-attack-"))
        home.chmod(0o755)  # the run user may walk up to the data directory
        try:
            extra = {"SCHEDD_WORKER__RUN_AS": user.pw_name, "PGPASSWORD": DB_PASSWORD}
            with running_schedd(home, extra) as server:
                yield server, user.pw_uid
        finally:
            shutil.rmtree(home, ignore_errors=True)


def client(server: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"})


def admin_key(server: Server) -> str:
    return (server.data_dir / "admin.key").read_text().strip()


def writer_key(server: Server) -> str:
    with client(server, admin_key(server)) as admin:
        made = admin.post("/api/apikeys", json={"name": "ci", "scopes": ["task.write"]})
        assert made.status_code == 201, made.text
        return str(made.json()["key"])


def task(name: str, **fields: object) -> dict[str, object]:
    return {"name": name, "executor": "shell", "command": LOOT, **fields}


def test_a_write_only_key_cannot_make_or_change_anything_that_runs_by_itself(
    attacked: tuple[Server, int],
) -> None:
    server, _ = attacked
    with client(server, admin_key(server)) as admin:
        nightly = admin.post("/api/tasks", json=task("nightly", command="true", schedule="@daily"))
        assert nightly.status_code == 201
    with client(server, writer_key(server)) as writer:
        for body in (
            task("loot-cron", schedule="* * * * * *"),
            task("loot-dep", dependencies=[nightly.json()["id"]]),
        ):
            refused = writer.post("/api/tasks", json=body)
            assert refused.status_code == 403, refused.text
            assert "task.execute" in refused.json()["message"]
        mine = writer.post("/api/tasks", json=task("loot"))
        assert mine.status_code == 201  # it cannot run it: triggering needs task.execute
        assert writer.post("/api/tasks/loot/trigger").status_code == 403
        assert writer.patch("/api/tasks/loot", json={"schedule": "* * * * * *"}).status_code == 403
        patched = writer.patch("/api/tasks/nightly", json={"command": LOOT})
        assert patched.status_code == 403
    with client(server, admin_key(server)) as admin:
        assert admin.get("/api/tasks/nightly").json()["command"] == "true"
        assert admin.get("/api/tasks/loot").json()["schedule"] is None


def test_a_task_that_runs_finds_no_secret_to_steal(attacked: tuple[Server, int]) -> None:
    server, run_uid = attacked
    key = admin_key(server)
    jwt_secret = (server.data_dir / "jwt.secret").read_text().strip()
    with client(server, key) as admin:
        created = admin.post(
            "/api/tasks", json=task("loot-run", environment={"DATA": str(server.data_dir)})
        )
        assert created.status_code == 201, created.text
        run = admin.post("/api/tasks/loot-run/trigger").json()

        def ended() -> bool:
            status = admin.get(f"/api/runs/{run['id']}").json()["status"]
            return status in ("completed", "failed")

        assert wait_until(ended, 30, interval=0.2)
        text = admin.get(f"/api/runs/{run['id']}/output").json()["data"]
    assert f"uid={run_uid}" in text
    for secret in (key, jwt_secret, DB_PASSWORD):
        assert secret not in text
    assert "Permission denied" in text  # it tried: environ and the data directory
    env = [line.split("=", 1)[0] for line in text.splitlines() if "=" in line]
    allowed = {"PATH", "LANG", "LANGUAGE", "TZ", "HOME", "USER", "LOGNAME", "SHELL", "DATA"}
    shell_own = {"PWD", "SHLVL", "_", "OLDPWD", "uid"}
    assert {
        name
        for name in env
        if name not in allowed | shell_own and not name.startswith(("LC_", "SCHED_"))
    } == set(), text
    assert os.stat(server.data_dir).st_mode & 0o077 == 0
