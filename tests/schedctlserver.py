"""A real `schedd run` (all roles, embedded SQLite) on a free port, for schedctl's e2e tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.proc import isolated_env, run, schedctl, schedd, wait_until

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    home: Path
    env: dict[str, str]
    url: str
    proc: subprocess.Popen[str]

    @property
    def data_dir(self) -> Path:
        return self.home / ".local" / "share" / "sched"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'sched.db'}"

    def ctl(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """schedctl as the operator on this host runs it: no flags, HOME finds the files."""
        return run(schedctl(*args), {**self.env, **(env or {})}, self.home, timeout=timeout)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextmanager
def running_schedd(home: Path, extra: dict[str, str] | None = None) -> Iterator[Server]:
    port = free_port()
    env = isolated_env(home, {"API_PORT": str(port), **(extra or {})})
    log = (home / "schedd.log").open("w")
    proc = subprocess.Popen(
        schedd("run"), env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    server = Server(home, env, url, proc)
    try:
        started = wait_until(
            lambda: (
                proc.poll() is not None
                or ((server.data_dir / "api.url").exists() and _healthy(url))
            ),
            START_TIMEOUT,
            interval=0.1,
        )
        assert started and proc.poll() is None, (home / "schedd.log").read_text()
        yield server
    finally:
        stop(proc)
        log.close()


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
