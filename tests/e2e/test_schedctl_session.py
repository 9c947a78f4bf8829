"""schedctl against a real schedd: the same session over HTTP and with --db gives the same
JSON; apply is idempotent and --prune prunes; `trigger --wait` exits with the run's code."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.schedctlserver import Server, running_schedd

pytestmark = pytest.mark.slow

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
VOLATILE = {
    "id",
    "task_id",
    "execution_time",
    "uptime_seconds",
    "worker_id",
    "cpu_seconds",
    "max_rss_mb",
    "clock_skew_seconds",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_schedd(tmp_path_factory.mktemp("schedctl-e2e")) as server:
        yield server


def normalized(value: Any, name: str) -> Any:
    """Ids, times, durations and the session's task name replaced by placeholders: what
    must match is the shape and every other value."""
    if isinstance(value, dict):
        return {k: f"<{k}>" if k in VOLATILE else normalized(v, name) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(v, name) for v in value]
    if isinstance(value, str):
        return "<time>" if TIME.match(value) else value.replace(name, "<name>")
    return value


def session(server: Server, name: str, *mode: str) -> list[tuple[int, Any]]:
    """The scripted session on task ``name``: every step's exit code and JSON output."""
    steps: list[tuple[int, Any]] = []

    def step(*args: str) -> Any:
        result = server.ctl(*mode, "-o", "json", *args)
        assert result.stdout, (args, result.stderr)
        data = json.loads(result.stdout)
        steps.append((result.returncode, normalized(data, name)))
        return data

    step(
        "task", "create", name, 'echo "hello $1"; exit 3', "--arg", "e2e",
        "--schedule", "0 0 3 * * *", "--tag", name, "--retries", "0",
    )  # fmt: skip
    step("task", "list", "--tag", name)
    step("task", "show", name)
    run = step("task", "trigger", name, "--wait", "--timeout", "30")
    step("task", "runs", name)
    step("run", "show", str(run["id"]))
    step("run", "logs", str(run["id"]))
    step("task", "pause", name)
    step("task", "resume", name)
    step("task", "next", name, "-n", "2")
    step("task", "delete", name)
    return steps


def test_the_same_session_gives_the_same_json_over_http_and_with_db(server: Server) -> None:
    # The two sessions run side by side (different task names) to halve the wait.
    with ThreadPoolExecutor(2) as pool:
        http_session = pool.submit(session, server, "demo-http")
        db_session = pool.submit(session, server, "demo-db", "--db", server.db_url)
        over_http, direct = http_session.result(), db_session.result()
    assert over_http[3][0] == 3, "trigger --wait exits with the run's exit code"
    assert over_http[3][1]["status"] == "failed"
    assert over_http[6][1]["data"] == "hello e2e\n"
    for number, (http_step, db_step) in enumerate(zip(over_http, direct, strict=True)):
        assert http_step == db_step, f"step {number} differs"


def test_trigger_wait_follow_streams_output_and_exits_with_the_code(server: Server) -> None:
    server.ctl("task", "create", "three", "echo out; echo err >&2; exit 3")
    result = server.ctl("task", "trigger", "three", "--follow")
    assert result.returncode == 3, result.stderr
    assert result.stdout == "out\nerr\n"
    assert re.search(r"run \d+ failed \(exit 3\)", result.stderr)


def test_apply_twice_changes_nothing_and_prune_removes_the_rest(
    server: Server, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.toml"
    tasks.write_text(
        '[tasks.nightly]\nexecutor = "shell"\ncommand = "true"\nschedule = "@daily"\n'
        'tags = ["applied"]\n\n'
        '[tasks.after]\nexecutor = "shell"\ncommand = "true"\ndependencies = ["nightly"]\n'
        'tags = ["applied"]\n'
    )
    first = json.loads(server.ctl("-o", "json", "apply", "-f", str(tasks)).stdout)
    assert first["created"] == ["nightly", "after"]
    second = server.ctl("apply", "-f", str(tasks))
    assert second.returncode == 0
    assert "0 to create, 0 to change, 2 unchanged, 0 to delete" in second.stdout
    assert "no changes" in second.stderr
    tasks.write_text('[tasks.nightly]\nexecutor = "shell"\ncommand = "true"\nschedule = "@daily"\n'
                     'tags = ["applied"]\n')  # fmt: skip
    pruned = json.loads(
        server.ctl("-o", "json", "apply", "-f", str(tasks), "--prune", "--tag", "applied").stdout
    )
    assert pruned["deleted"] == ["after"]
    names = [
        t["name"] for t in json.loads(server.ctl("-o", "json", "task", "list").stdout)["items"]
    ]
    assert "after" not in names and "nightly" in names
