"""sd_notify over a real unix datagram socket: path and abstract addresses, watchdog."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from schedd.sdnotify import (
    Heartbeat,
    Notifier,
    Watchdog,
    socket_address,
    take_from_environment,
    watchdog_interval,
)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket and its NOTIFY_SOCKET value (a short path)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    # AF_UNIX paths are limited to ~108 bytes; tmp_path can be longer.
    path = f"/tmp/sdn-{os.getpid()}-{time.monotonic_ns()}.sock"
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()
    os.unlink(path)


def test_no_socket_means_no_op() -> None:
    notifier = Notifier(env={})
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert socket_address({"NOTIFY_SOCKET": "vsock:2:1234"}) is None


def test_ready_and_stopping_arrive_on_a_path_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier(env={"NOTIFY_SOCKET": path})
    assert notifier.ready("serving 3 roles")
    assert sock.recv(4096).decode() == "READY=1\nSTATUS=serving 3 roles"
    assert notifier.stopping()
    assert sock.recv(4096).decode().splitlines()[0] == "STOPPING=1"


def test_abstract_socket_address() -> None:
    name = f"sched-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier(env={"NOTIFY_SOCKET": "@" + name}).ping()
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_a_gone_manager_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
    assert notifier.ready("x") is False
    assert "cannot notify" in caplog.text


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "200000"}, 0.1),
        ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}, 2.0),
        ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected


def test_watchdog_pings_only_while_the_main_loop_beats(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    heartbeat = Heartbeat(limit=0.3)
    watchdog = Watchdog(Notifier(env={"NOTIFY_SOCKET": path}), 0.05, heartbeat.alive)
    watchdog.start()
    try:
        assert sock.recv(4096) == b"WATCHDOG=1"
        time.sleep(0.5)  # no beat: the heartbeat goes stale, the pings stop
        sock.setblocking(False)
        while True:  # drop the pings sent before it went stale
            try:
                sock.recv(4096)
            except BlockingIOError:
                break
        time.sleep(0.3)
        with pytest.raises(BlockingIOError):
            sock.recv(4096)
        heartbeat.beat()
        sock.settimeout(5)
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        watchdog.stop()


def test_taking_the_variables_removes_them_for_the_task_processes() -> None:
    environ = {
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": str(os.getpid()),
        "PATH": "/usr/bin",
    }
    notifier, interval = take_from_environment(environ)
    assert notifier.address == "/run/systemd/notify"
    assert interval == 15.0
    assert environ == {"PATH": "/usr/bin"}


def test_no_watchdog_without_a_socket() -> None:
    notifier, interval = take_from_environment({"WATCHDOG_USEC": "30000000"})
    assert not notifier.enabled and interval is None
