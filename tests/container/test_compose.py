"""The compose stack: locally built images (Debian packages, the sched wheel), started
with podman-compose, a task created and triggered through the API, its output read.

Marked ``container`` and left out of the default run (the first image build takes
minutes): `pytest -m container`. It needs podman, podman-compose and mmdebstrap
(apt-get install podman podman-compose mmdebstrap runc); without them it skips, or
fails under CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.schedctlserver import free_port

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("podman", "podman-compose", "mmdebstrap")


class Stack:
    def __init__(self, project: str, port: int) -> None:
        self.project = project
        self.url = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": os.environ.get(
                "CONTAINERS_CONF", str(ROOT / "containers" / "podman.conf")
            ),
            "SCHED_API_PORT": str(port),
        }

    def run(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run(
            list(args), cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"{args}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def compose(self, *args: str, timeout: float = 300) -> str:
        return self.run("podman-compose", "-p", self.project, *args, timeout=timeout)

    def logs(self) -> str:
        names = subprocess.run(
            [
                "podman",
                "ps",
                "-a",
                "--format",
                "{{.Names}} {{.Status}}",
                "--filter",
                f"label=io.podman.compose.project={self.project}",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        out = [names]
        for line in names.splitlines():
            name = line.split()[0]
            log = subprocess.run(
                ["podman", "logs", "--tail", "20", name],
                env=self.env,
                capture_output=True,
                text=True,
                check=False,
            )
            out.append(f"--- {name}\n{log.stdout}{log.stderr}")
        return "\n".join(out)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        message = f"needs {', '.join(missing)} (apt-get install {' '.join(missing)})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    stack = Stack(f"schedtest{uuid.uuid4().hex[:8]}", free_port())
    subprocess.run(
        [str(ROOT / "containers" / "build.sh")],
        cwd=ROOT,
        env={**stack.env, "PYTHON": sys.executable},
        check=True,
        timeout=1500,
    )
    try:
        stack.compose("up", "-d")
        yield stack
    finally:
        subprocess.run(
            ["podman-compose", "-p", stack.project, "down", "-v"],
            cwd=ROOT,
            env=stack.env,
            capture_output=True,
            timeout=300,
            check=False,
        )


def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return False


def test_the_stack_runs_a_task_on_one_of_its_two_workers(stack: Stack) -> None:
    def healthy() -> bool:
        reply = httpx.get(f"{stack.url}/health", timeout=5)
        body = reply.json()
        return reply.status_code == 200 and sum(body.get("isolation", {}).values()) == 2

    assert wait_for(healthy, 180), stack.logs()
    key = stack.run(
        "podman",
        "exec",
        f"{stack.project}_api_1",
        "sh",
        "-c",
        'schedctl --db "$DATABASE_URL" -o json apikey create compose-test --scope all',
    )
    token = key.split('"key": "')[1].split('"')[0]
    with httpx.Client(
        base_url=stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as api:
        created = api.post(
            "/api/tasks",
            json={
                "name": "hello",
                "executor": "shell",
                "command": "echo hello from $(hostname) as $(id -un)",
            },
        )
        assert created.status_code == 201, created.text
        run = api.post(f"/api/tasks/{created.json()['id']}/trigger")
        assert run.status_code == 202, run.text
        run_id = run.json()["id"]

        def finished() -> bool:
            return api.get(f"/api/runs/{run_id}").json()["status"] in ("completed", "failed")

        assert wait_for(finished, 60), stack.logs()
        done = api.get(f"/api/runs/{run_id}").json()
        assert done["status"] == "completed", (done, stack.logs())
        output = api.get(f"/api/runs/{run_id}/output").text
    # A worker container ran it, as the image's unprivileged user.
    assert "hello from worker-" in output, output
    assert "as sched" in output, output
