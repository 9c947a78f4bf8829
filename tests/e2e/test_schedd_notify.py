"""`schedd run` under a (simulated) systemd: Type=notify over a real datagram socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.proc import isolated_env, schedd


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = f"/tmp/schedd-notify-{os.getpid()}-{time.monotonic_ns()}.sock"
    sock.bind(path)
    yield sock, path
    sock.close()
    os.unlink(path)


def receive_until(sock: socket.socket, wanted: str, timeout: float) -> list[str]:
    """Every message received until one holding the line ``wanted`` (or the timeout)."""
    messages: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            break
        messages.append(message)
        if wanted in message.splitlines():
            break
    return messages


@pytest.mark.parametrize("watchdog", [False, True], ids=["plain", "watchdog"])
def test_ready_watchdog_and_stopping_reach_notify_socket(
    tmp_path: Path, notify_socket: tuple[socket.socket, str], watchdog: bool
) -> None:
    sock, path = notify_socket
    extra = {"NOTIFY_SOCKET": path}
    if watchdog:
        extra["WATCHDOG_USEC"] = "200000"
    proc = subprocess.Popen(
        schedd("run", "--role", "scheduler"),
        env=isolated_env(tmp_path, extra),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        before_ready = receive_until(sock, "READY=1", 30)
        assert before_ready and "READY=1" in before_ready[-1].splitlines(), before_ready
        assert any(line.startswith("STATUS=") for line in before_ready[-1].splitlines())
        assert not any("WATCHDOG=1" in m for m in before_ready[:-1])
        # 0.2 s watchdog: pings every 0.1 s; in 0.6 s at least 3 must arrive.
        running = receive_until(sock, "never", 0.6)
        pings = [m for m in running if m == "WATCHDOG=1"]
        if watchdog:
            assert len(pings) >= 3, running
        else:
            assert running == []
    finally:
        proc.send_signal(signal.SIGTERM)
    after = receive_until(sock, "STOPPING=1", 30)
    out, _ = proc.communicate(timeout=30)
    assert any("STOPPING=1" in m.splitlines() for m in after), (after, out)
    assert proc.returncode == 0, out
    assert "Traceback" not in out
