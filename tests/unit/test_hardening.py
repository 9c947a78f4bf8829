"""The daemon keeps its secrets from tasks: not dumpable, a closed data directory."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from schedd.hardening import protect_data_dir

HOLDER = (
    "import sys, time\n"
    "from schedd.hardening import make_undumpable\n"
    "if sys.argv[1] == 'yes': assert make_undumpable()\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def _as_one_unprivileged_user() -> list[str]:
    """A prefix that runs a program as one user without capabilities: ``nobody`` when
    root (root's full capability sets would hide the dumpable check), else ourselves."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("util-linux setpriv is not installed")
    prefix = [setpriv, "--inh-caps=-all", "--bounding-set=-all"]
    if os.geteuid() == 0:
        prefix[1:1] = ["--reuid=65534", "--regid=65534", "--clear-groups"]
    return [*prefix, "--"]


def _read_environ(pid: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_as_one_unprivileged_user(), "cat", f"/proc/{pid}/environ"],
        capture_output=True,
        text=True,
        timeout=10,
    )


@pytest.mark.parametrize("undumpable", [True, False], ids=["undumpable", "control"])
def test_a_process_of_the_same_user_cannot_read_the_environment(undumpable: bool) -> None:
    env = {**os.environ, "JWT_SECRET": "secret-" + "x" * 40}
    holder = subprocess.Popen(
        [*_as_one_unprivileged_user(), sys.executable, "-c", HOLDER, "yes" if undumpable else "no"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        result = _read_environ(holder.pid)
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    if undumpable:
        assert result.returncode != 0
        assert "secret-" not in result.stdout
        assert "Permission denied" in result.stderr
    else:  # the same reader sees it when the flag is not cleared: the test can fail
        assert "JWT_SECRET=secret-" in result.stdout


def test_an_open_data_directory_is_closed_to_other_users(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    protect_data_dir(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


def test_a_closed_data_directory_is_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o500)
    protect_data_dir(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o500
    protect_data_dir(tmp_path / "missing")  # nothing to do, no error
