"""Every failure against a real schedd is one line on stderr with its documented code."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.proc import schedctl
from tests.schedctlserver import Server, running_schedd, stop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_schedd(tmp_path_factory.mktemp("schedctl-errors")) as server:
        yield server


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_unknown_task_exits_3(server: Server) -> None:
    result = server.ctl("task", "show", "no-such-task")
    assert result.returncode == 3
    assert one_line(result) == "error: task 'no-such-task' not found"


def test_bad_cron_exits_65_and_names_the_field(server: Server) -> None:
    result = server.ctl("task", "create", "bad", "true", "--schedule", "0 0 25 * * *")
    assert result.returncode == 65
    line = one_line(result)
    assert line.startswith("error: schedule: cron expression '0 0 25 * * *'")  # as the API says
    assert "hour field '25' is out of range" in line


def test_bad_toml_in_apply_exits_65_naming_file_and_line(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[tasks.a]\nexecutor = "shell"\ncommand = \n')
    result = server.ctl("apply", "-f", str(path))
    assert result.returncode == 65
    assert one_line(result).startswith(f"error: {path}:3:11: invalid TOML")
    assert result.stdout == ""


def test_wrong_token_exits_4(server: Server) -> None:
    result = server.ctl("--token", "scheduler_" + "x" * 32, "task", "list")
    assert result.returncode == 4
    line = one_line(result)
    assert "invalid or revoked API key" in line
    assert f"the key or token from --token was refused by {server.url}" in line


def test_the_local_admin_key_is_not_sent_elsewhere(server: Server) -> None:
    result = server.ctl("--api", server.url.replace("127.0.0.1", "localhost"), "task", "list")
    assert result.returncode == 4
    line = one_line(result)
    assert "missing credentials" in line
    assert "set --token or SCHED_TOKEN" in line and "apikey create" in line


def test_a_stopped_server_exits_69(tmp_path: Path) -> None:
    with running_schedd(tmp_path) as server:
        assert server.ctl("task", "list").returncode == 0
        stop(server.proc)
        result = server.ctl("task", "list")
    assert result.returncode == 69
    assert f"cannot reach the sched API at {server.url}" in one_line(result)


def test_top_runs_on_a_terminal_until_q(server: Server) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        schedctl("top", "--interval", "0.5"),
        env={**server.env, "TERM": "xterm", "COLUMNS": "120", "LINES": "40"},
        cwd=server.home,
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 20
    try:
        while b"Recent failures" not in screen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                screen += os.read(master, 65536)
        assert b"sched top" in screen and b"Workers (1)" in screen, screen[-2000:]
        os.write(master, b"q")
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_a_narrow_token_reads_but_is_forbidden_to_write(server: Server) -> None:
    issued = server.ctl("-o", "json", "token", "issue", "--scope", "task.read", "--ttl", "60")
    assert issued.returncode == 0, issued.stderr
    token = json.loads(issued.stdout)["token"]
    who = json.loads(server.ctl("--token", token, "-o", "json", "whoami").stdout)
    assert (who["kind"], who["scopes"]) == ("token", ["task.read"])
    assert server.ctl("--token", token, "task", "list").returncode == 0
    result = server.ctl("--token", token, "task", "create", "x", "true")
    assert result.returncode == 5
    assert "task.write" in one_line(result)
