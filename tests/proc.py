"""Running schedd/schedctl as real subprocesses in an isolated environment."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

# Variables of the developer's shell that would change what schedd loads.
_LEAKY_PREFIXES = ("SCHEDD_", "SCHED_")
_LEAKY = {
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "RABBITMQ_URL",
    "REDIS_URL",
    "API_HOST",
    "API_PORT",
    "JWT_SECRET",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "NOTIFY_SOCKET",
}


# Tests start workers as whoever runs them (root in CI): a worker that could switch
# users must be told whom to run tasks as, so name ourselves (no switch happens).
RUN_AS_SELF = {"SCHEDD_WORKER__RUN_AS": pwd.getpwuid(os.geteuid()).pw_name}


def isolated_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ without sched's variables, with HOME (and XDG dirs) under ``home``,
    and workers running tasks as this user (:data:`RUN_AS_SELF`)."""
    env = {
        k: v for k, v in os.environ.items() if k not in _LEAKY and not k.startswith(_LEAKY_PREFIXES)
    }
    env["HOME"] = str(home)
    env["XDG_DATA_HOME"] = str(home / ".local" / "share")
    env["XDG_CONFIG_HOME"] = str(home / ".config")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(RUN_AS_SELF)
    env.update(extra or {})
    return env


def schedd(*args: str) -> list[str]:
    return [sys.executable, "-m", "schedd", *args]


def schedctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "schedctl", *args]


def run(
    cmd: list[str], env: Mapping[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
