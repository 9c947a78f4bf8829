"""Functions that function-executor tests call in pool processes (by ``tests.funcs:NAME``)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any


def noop() -> None:
    return None


def echo(*values: Any) -> list[Any]:
    return list(values)


def write(text: str) -> None:
    sys.stdout.write(text)


def shout(text: str) -> str:
    print(text)
    print(f"err:{text}", file=sys.stderr)
    return text.upper()


def pid() -> int:
    return os.getpid()


def environment(*names: str) -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in names}


def fail(message: str) -> None:
    raise ValueError(message)


def exit_with(code: Any) -> None:
    sys.exit(code)


def hard_exit(code: int) -> None:
    os._exit(code)


def crash() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def c_level_write(text: str) -> None:
    libc = ctypes.CDLL(None)
    data = text.encode()
    libc.write(1, data, len(data))
    libc.write(2, data, len(data))


def subprocess_echo(text: str) -> int:
    return subprocess.run(["/bin/sh", "-c", f'echo "{text}"; echo "$SCHED_RUN_ID" >&2']).returncode


def print_bytes(count: int) -> None:
    sys.stdout.write("x" * count)


def print_pids_then_sleep() -> None:
    """Prints its pid and a child's, then sleeps (a call to time out or cancel)."""
    child = subprocess.Popen(["sleep", "300"])
    print(os.getpid(), child.pid, flush=True)
    time.sleep(300)


def ignore_term_then_sleep() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(os.getpid(), flush=True)
    time.sleep(300)


def leave_a_process() -> int:
    child = subprocess.Popen(["sleep", "300"])
    print(child.pid, flush=True)
    return child.pid


def leave_a_thread() -> None:
    threading.Thread(target=time.sleep, args=(300,), daemon=True).start()


def change_directory(path: str) -> str:
    os.chdir(path)
    return os.getcwd()


def cwd() -> str:
    return os.getcwd()


async def coroutine(value: int) -> int:
    return value * 2


def unserialisable() -> object:
    return {1, 2}


not_callable = 42


def environment_at_exit(path: str) -> None:
    """Writes SCHED_RUN_ID as the process sees it when it exits (after the call)."""
    import atexit

    def report() -> None:
        with open(path, "w") as file:
            file.write(str(os.environ.get("SCHED_RUN_ID")))

    atexit.register(report)


def append_run_id(path: str) -> None:
    """Appends this run's id to ``path`` (counts executions across processes)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{os.environ['SCHED_RUN_ID']}\n".encode())
    finally:
        os.close(fd)


def burn_cpu(seconds: float) -> None:
    """Spins for ``seconds`` of CPU time."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def nap(seconds: float) -> None:
    time.sleep(seconds)
