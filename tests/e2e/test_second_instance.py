"""A second embedded schedd on the same data directory is refused and leaves the
running one's files alone: `schedctl` still finds the first one's API."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.proc import isolated_env, run, schedctl, schedd, wait_until

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_refused_second_instance_writes_nothing_in_the_data_directory(
    tmp_path: Path,
) -> None:
    data = tmp_path / ".local" / "share" / "sched"
    first = subprocess.Popen(
        schedd("run"),
        env=isolated_env(tmp_path, {"API_PORT": str(free_port())}),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url_file = data / "api.url"
        assert wait_until(url_file.exists, 30), "the first instance did not start"
        before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in data.iterdir()}
        second = run(
            schedd("run"),
            isolated_env(tmp_path, {"API_PORT": str(free_port())}),
            tmp_path,
        )
        assert second.returncode != 0
        assert "another scheduler is running on this SQLite database" in second.stderr
        after = {
            p.name: (p.read_bytes(), p.stat().st_mtime_ns)
            for p in data.iterdir()
            if not p.name.startswith("sched.db")  # the shared database itself
        }
        assert after == {k: v for k, v in before.items() if not k.startswith("sched.db")}
        health = run(schedctl("system", "health"), isolated_env(tmp_path), tmp_path)
        assert health.returncode == 0, health.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(30)
