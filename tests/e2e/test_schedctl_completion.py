"""Dynamic shell completion of task names and run ids from a real local schedd, as bash,
zsh and fish ask for it (Click's completion protocol, through `python -m schedctl`)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.proc import isolated_env
from tests.schedctlserver import Server, running_schedd


def complete(env: dict[str, str], home: Path, shell: str, words: str) -> list[str]:
    """What `schedctl` answers when ``shell`` completes the last of ``words``."""
    env = {**env, "_SCHEDCTL_COMPLETE": f"complete_{shell}"}
    if shell == "bash":  # the words and the index of the one completed
        env.update(COMP_WORDS=words, COMP_CWORD=str(len(words.split(" ")) - 1))
    else:  # zsh and fish send the command line as typed (Typer's scripts)
        env.update(_TYPER_COMPLETE_ARGS=words, _TYPER_COMPLETE_FISH_ACTION="get-args")
    result = subprocess.run(
        [sys.executable, "-m", "schedctl"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [line for line in result.stdout.splitlines() if line]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    home = tmp_path_factory.mktemp("completion")
    with running_schedd(home) as server:
        key = (server.data_dir / "admin.key").read_text().strip()
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as api:
            for name in ("backup-db", "backup-files", "report"):
                task = {"name": name, "command": "true"}
                assert api.post("/api/tasks", json=task).status_code == 201
            assert api.post("/api/tasks/report/trigger").status_code == 202
        yield server  # type: ignore[misc]


def test_bash_completes_task_names_and_run_ids(server: Server) -> None:
    assert complete(server.env, server.home, "bash", "schedctl task show back") == [
        "backup-db",
        "backup-files",
    ]
    assert complete(server.env, server.home, "bash", "schedctl run show ") == ["1"]


def test_zsh_and_fish_get_names_with_a_description(server: Server) -> None:
    zsh = complete(server.env, server.home, "zsh", "schedctl task next backup-d")
    assert zsh == ['_arguments \'*: :(("backup-db":"shell, no schedule"))\'']
    fish = complete(server.env, server.home, "fish", "schedctl run logs ")
    assert len(fish) == 1 and fish[0].startswith("1\ttask 3, "), fish


def test_no_server_completes_nothing_quickly_and_silently(tmp_path: Path) -> None:
    env = isolated_env(tmp_path, {"SCHED_API": "http://127.0.0.1:9"})
    started = time.monotonic()
    assert complete(env, tmp_path, "bash", "schedctl task show ") == []
    assert time.monotonic() - started < 20  # no retries, no long waits (generous for CI)
