"""worker.run_as: who tasks run as, and the start refused when that is left unsaid."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from schedd.config import load_settings
from schedd.errors import ConfigError
from schedd.executors.identity import can_switch_users, current_user, drop_prefix, resolve
from schedd.executors.runas import RunAsRefused, RunUsers, check_run_as
from tests.proc import isolated_env, schedd

PG = {"DATABASE_URL": "postgresql://sched@db.example/sched", "JWT_SECRET": "j" * 40}


def test_a_worker_that_could_switch_users_refuses_to_start_without_run_as() -> None:
    if not can_switch_users():
        pytest.skip("needs root or CAP_SETUID (CI runs as root)")
    with pytest.raises(ConfigError, match="worker.run_as") as caught:
        check_run_as(load_settings(env=PG))
    assert 'run_as = "root"' in str(caught.value)
    root = check_run_as(load_settings(env={**PG, "SCHEDD_WORKER__RUN_AS": "root"}))
    assert root is not None and root.uid == 0


def test_the_embedded_default_runs_tasks_as_the_invoking_user(tmp_path: Path) -> None:
    settings = load_settings(env={"HOME": str(tmp_path)})
    assert settings.is_embedded
    assert check_run_as(settings) is None
    assert RunUsers.from_settings(settings.worker).pick(None) == current_user()


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("RUN_AS", "no-such-user-x1", "no user 'no-such-user-x1'"),
        ("RUN_AS", "root:no-such-group-x1", "no group 'no-such-group-x1'"),
        ("ALLOWED_RUN_AS", '["no-such-user-x2"]', "no user 'no-such-user-x2'"),
    ],
)
def test_an_unknown_user_or_group_is_one_error_naming_the_key(
    key: str, value: str, reason: str
) -> None:
    settings = load_settings(
        env={**PG, "SCHEDD_WORKER__RUN_AS": "root", f"SCHEDD_WORKER__{key}": value}
    )
    with pytest.raises(ConfigError, match=f"worker.{key.lower()}: {reason}"):
        check_run_as(settings)


def test_a_malformed_run_as_is_refused_when_loading() -> None:
    with pytest.raises(ConfigError, match="worker.run_as"):
        load_settings(env={"SCHEDD_WORKER__RUN_AS": "bad user"})


def test_config_check_says_the_same_as_the_start(tmp_path: Path) -> None:
    if not can_switch_users():
        pytest.skip("needs root or CAP_SETUID (CI runs as root)")
    env = isolated_env(tmp_path, PG)
    env.pop("SCHEDD_WORKER__RUN_AS")
    done = subprocess.run(
        schedd("config", "check", "--role", "worker"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 78
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "worker.run_as" in lines[0], done.stderr


def test_a_task_may_not_pick_a_user_the_worker_does_not_offer() -> None:
    users = RunUsers.from_settings(load_settings(env={"SCHEDD_WORKER__RUN_AS": "root"}).worker)
    assert users.pick("root").uid == 0
    with pytest.raises(RunAsRefused, match="allowed_run_as"):
        users.pick("nobody")


def test_the_drop_prefix_switches_only_when_the_user_differs() -> None:
    me = current_user()
    assert not any(option.startswith("--reuid") for option in drop_prefix(me))
    assert "--no-new-privs" in drop_prefix(me)
    if os.geteuid() == 0:
        nobody = resolve("nobody")
        options = drop_prefix(nobody)
        assert f"--reuid={nobody.uid}" in options and "--init-groups" in options
        assert "--clear-groups" in drop_prefix(resolve("nobody:nogroup"))
