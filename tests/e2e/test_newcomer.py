"""The newcomer's path: a built wheel in a fresh virtual environment, no config at all.

Build the wheel, install it into a new venv, start `schedd` in an empty HOME, and use
`schedctl` with no flags beyond the task's own: it must find the API and the admin key
by itself. Then SIGTERM: exit 0 and nothing left running.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.proc import isolated_env, wait_until
from tests.schedctlserver import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin directory of a fresh venv with sched installed from a freshly built wheel."""
    work = tmp_path_factory.mktemp("newcomer")
    wheels = work / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("sched-*.whl")
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run(
        [str(env_dir / "bin" / "pip"), "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
    )
    return env_dir / "bin"


@pytest.fixture
def daemon(
    installed: Path, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    home = tmp_path / "home"
    home.mkdir()
    env = isolated_env(home, {"PATH": f"{installed}:/usr/bin:/bin"})
    daemon_env = {**env, "API_PORT": str(free_port())}
    proc = subprocess.Popen(
        [str(installed / "schedd")],
        env=daemon_env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url_file = home / ".local" / "share" / "sched" / "api.url"
    try:
        if not wait_until(url_file.exists, 60):
            proc.kill()
            output, _ = proc.communicate(timeout=10)
            pytest.fail(f"schedd did not start its API:\n{output[-5000:]}")
        yield proc, env
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def schedctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["schedctl", *args], env=env, capture_output=True, text=True, timeout=120)


def test_a_newcomer_gets_a_task_running_without_any_configuration(
    daemon: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    proc, env = daemon
    created = schedctl(
        env, "task", "create", "tick", "echo tick $1", "--arg", "ok", "--schedule", "*/2 * * * * *"
    )
    assert created.returncode == 0, created.stderr

    def completed() -> list[dict[str, object]]:
        listed = schedctl(
            env, "-o", "json", "run", "list", "--task", "tick", "--status", "completed"
        )
        assert listed.returncode == 0, listed.stderr
        items: list[dict[str, object]] = json.loads(listed.stdout)["items"]
        return items

    assert wait_until(lambda: len(completed()) >= 2, 30, interval=0.5), "no two completed runs"
    for run in completed()[:2]:
        logs = schedctl(env, "run", "logs", str(run["id"]))
        assert logs.returncode == 0 and logs.stdout == "tick ok\n", logs

    triggered = schedctl(env, "task", "trigger", "tick", "--wait", "--timeout", "60")
    assert triggered.returncode == 0, triggered.stderr

    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left running after SIGTERM: {alive}"
