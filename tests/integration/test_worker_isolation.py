"""Run isolation through a real worker: environment, identity, cgroups, limits, cost."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from schedd.db import Database
from schedd.services import output, runs, workers
from tests.services import unavailable
from tests.userkit import system_user
from tests.workerkit import (
    add_run,
    alive,
    make_task,
    pids_in,
    running_worker,
    wait_for_status,
    wait_until,
)


def output_of(db: Database, run_id: int) -> str:
    with db.session() as session:
        return output.read(session, run_id).text


def env_of(db: Database, run_id: int) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output_of(db, run_id).splitlines() if "=" in line)


def test_a_run_gets_its_task_environment_and_none_of_the_worker_secrets(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_SECRET", "j" * 40)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    task = make_task(db, "env", environment={"REPORT_DIR": "/srv/reports"})
    run_id = add_run(db, task)
    with running_worker(db, tmp_path, env_passthrough='["HTTPS_PROXY"]'):
        wait_for_status(db, run_id, "completed", 15)
    env = env_of(db, run_id)
    assert env["REPORT_DIR"] == "/srv/reports"
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    assert env["SCHED_RUN_ID"] == str(run_id)
    assert not {"JWT_SECRET", "AWS_SECRET_ACCESS_KEY", "DATABASE_URL"} & env.keys()


IDENTITY = (
    'echo "uid=$(id -u) gid=$(id -g) groups=$(id -G) home=$HOME user=$USER pwd=$(pwd)"; '
    "grep -E '^(CapInh|CapPrm|CapEff|CapAmb|NoNewPrivs):' /proc/self/status"
)


def fields_of(text: str) -> dict[str, str]:
    pairs = [word.split("=", 1) for word in text.split() if "=" in word]
    lines = [line.split(":", 1) for line in text.splitlines() if ":" in line]
    return {**{k: v for k, v in pairs}, **{k: v.strip() for k, v in lines}}


@pytest.fixture
def run_user() -> Iterator[pwd.struct_passwd]:
    with system_user() as user:
        yield user


def test_a_run_executes_as_run_as_with_no_privilege_in_its_home(
    db: Database, tmp_path: Path, run_user: pwd.struct_passwd
) -> None:
    run_id = add_run(db, make_task(db, IDENTITY))
    with running_worker(db, tmp_path, run_as=run_user.pw_name):
        done = wait_for_status(db, run_id, {"completed", "failed"}, 15)
    text = output_of(db, run_id)
    assert done.status == "completed", text
    seen = fields_of(text)
    assert seen["uid"] == str(run_user.pw_uid)
    assert seen["gid"] == str(run_user.pw_gid)
    assert seen["groups"] == str(run_user.pw_gid)  # root's groups are gone
    assert (seen["home"], seen["user"], seen["pwd"]) == (
        run_user.pw_dir,
        run_user.pw_name,
        run_user.pw_dir,
    )
    for capability in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(seen[capability], 16) == 0, capability
    assert seen["NoNewPrivs"] == "1"


def test_a_run_user_cannot_read_root_only_files(
    db: Database, tmp_path: Path, run_user: pwd.struct_passwd
) -> None:
    shared = Path(tempfile.mkdtemp(prefix="sched-iso-"))
    try:
        shared.chmod(0o755)
        (shared / "secret").write_text("root-only\n")
        (shared / "secret").chmod(0o600)
        (shared / "open").write_text("anyone\n")
        (shared / "open").chmod(0o644)
        data = shared / "data"
        data.mkdir(mode=0o700)
        (data / "admin.key").write_text("scheduler_" + "a" * 32)
        (data / "admin.key").chmod(0o644)  # readable, but the directory is closed
        command = f"cat {shared}/open; cat {shared}/secret; cat {data}/admin.key; ls {data}"
        run_id = add_run(db, make_task(db, command))
        with running_worker(db, tmp_path, run_as=run_user.pw_name):
            wait_for_status(db, run_id, {"completed", "failed"}, 15)
        text = output_of(db, run_id)
    finally:
        shutil.rmtree(shared)
    assert "anyone" in text  # the run user reaches the directory: the denials are real
    assert "root-only" not in text and "scheduler_" not in text
    assert text.count("Permission denied") == 3, text


def test_a_task_picks_run_as_only_from_allowed_run_as(
    db: Database, tmp_path: Path, run_user: pwd.struct_passwd
) -> None:
    with system_user() as other:
        allowed = add_run(db, make_task(db, "id -un", run_as=other.pw_name))
        refused = add_run(db, make_task(db, "id -un", run_as="root"))
        with running_worker(
            db, tmp_path, run_as=run_user.pw_name, allowed_run_as=f'["{other.pw_name}"]'
        ):
            wait_for_status(db, allowed, "completed", 15)
            failed = wait_for_status(db, refused, "failed", 15)
        assert output_of(db, allowed).strip() == other.pw_name
    assert failed.error_message is not None
    assert "run_as 'root' is not in this worker's allowed_run_as" in failed.error_message
    assert output_of(db, refused) == ""


def test_working_dir_must_exist_and_be_open_to_the_run_user(
    db: Database, tmp_path: Path, run_user: pwd.struct_passwd
) -> None:
    closed = Path(tempfile.mkdtemp(prefix="sched-closed-"))  # 0700, root's
    try:
        ok = add_run(db, make_task(db, "pwd", working_dir="/tmp"))
        missing = add_run(db, make_task(db, "pwd", working_dir="/nonexistent/dir"))
        refused = add_run(db, make_task(db, "pwd", working_dir=str(closed)))
        with running_worker(db, tmp_path, run_as=run_user.pw_name):
            wait_for_status(db, ok, "completed", 15)
            gone = wait_for_status(db, missing, "failed", 15)
            denied = wait_for_status(db, refused, "failed", 15)
    finally:
        closed.rmdir()
    assert output_of(db, ok).strip() == "/tmp"
    assert gone.error_message == "working_dir /nonexistent/dir is not a directory on this worker"
    assert denied.error_message == f"working_dir {closed} is not accessible to {run_user.pw_name}"


# Processes that leave the run's process group or lose their parent: each prints its
# pid, then all sleep. setsid: a new session; double fork: the middle process exits at
# once (its child is orphaned); nohup ... &: the classic "survive the shell".
ESCAPES = (
    "setsid sh -c 'echo $$; exec sleep 300' & "
    "(sh -c 'echo $$; exec sleep 300' &) ; "
    "nohup sh -c 'echo $$; exec sleep 300' 2>/dev/null & "
    "echo $$; wait"
)
MODES = ["auto", "off"]  # a cgroup per run (this host has them), and the fallback


def zombies_of_this_process() -> list[int]:
    return [
        child.pid for child in psutil.Process().children() if child.status() == psutil.STATUS_ZOMBIE
    ]


def assert_gone_within_two_seconds(pids: list[int], since: float) -> None:
    assert wait_until(lambda: not any(alive(pid) for pid in pids), 2 - (time.monotonic() - since))
    assert wait_until(lambda: not set(pids) & set(zombies_of_this_process()), 1), "zombies left"


@pytest.mark.parametrize("cgroups", MODES)
def test_escaped_processes_die_with_a_timed_out_run(
    db: Database, tmp_path: Path, cgroups: str
) -> None:
    run_id = add_run(db, make_task(db, ESCAPES, timeout_seconds=2))
    with running_worker(db, tmp_path, cgroups=cgroups, kill_grace_seconds="0.5") as worker:
        assert (worker.cgroups.mode == "none") == (cgroups == "off")
        assert wait_until(lambda: len(pids_in(output_of(db, run_id))) >= 4, 5)
        pids = pids_in(output_of(db, run_id))
        assert all(alive(pid) for pid in pids)
        run = wait_for_status(db, run_id, "timeout", 5)
        assert_gone_within_two_seconds(pids, time.monotonic())
    assert run.error_message == "timed out after 2 s"


@pytest.mark.parametrize("cgroups", MODES)
def test_escaped_processes_die_with_a_cancelled_run_within_two_seconds(
    db: Database, tmp_path: Path, cgroups: str
) -> None:
    run_id = add_run(db, make_task(db, ESCAPES))
    with running_worker(db, tmp_path, cgroups=cgroups):
        assert wait_until(lambda: len(pids_in(output_of(db, run_id))) >= 4, 5)
        pids = pids_in(output_of(db, run_id))
        asked = time.monotonic()
        with db.session() as session:
            runs.cancel_run(session, run_id, actor="alice")
        wait_for_status(db, run_id, "cancelled", 2)
        assert_gone_within_two_seconds(pids, asked)


@pytest.mark.parametrize("cgroups", MODES)
def test_the_worker_row_says_how_its_runs_are_isolated(
    db: Database, tmp_path: Path, cgroups: str
) -> None:
    with running_worker(db, tmp_path, cgroups=cgroups) as worker, db.session() as session:
        shown = workers.get_worker(session, worker.worker_id)
    assert shown.isolation == worker.cgroups.mode
    assert (shown.isolation == "none") == (cgroups == "off")


def python_task(db: Database, code: str, **fields: Any) -> int:
    return make_task(db, f"{sys.executable} -c {shlex.quote(code)}", **fields)


def test_a_run_over_its_memory_limit_fails_as_out_of_memory_and_the_rest_carry_on(
    db: Database, tmp_path: Path
) -> None:
    hog = add_run(db, python_task(db, "b = b'x' * (512 << 20)", memory_max_mb=64))
    other = add_run(db, make_task(db, "sleep 1; echo fine"))
    with running_worker(db, tmp_path) as worker:
        failed = wait_for_status(db, hog, {"failed", "completed"}, 30)
        done = wait_for_status(db, other, "completed", 15)
        after = add_run(db, make_task(db, "echo still working"))
        wait_for_status(db, after, "completed", 15)
        assert worker.join(0) is False  # the worker still runs
    assert failed.status == "failed", output_of(db, hog)
    assert failed.error_message == "killed: out of memory (limit 64 MB)"
    assert failed.max_rss_mb is not None and failed.max_rss_mb <= 64.5
    assert output_of(db, other) == "fine\n" and done.exit_code == 0


def test_a_limit_the_worker_cannot_enforce_fails_the_run_with_the_reason(
    db: Database, tmp_path: Path
) -> None:
    run_id = add_run(db, make_task(db, "touch /tmp/never", memory_max_mb=64))
    with running_worker(db, tmp_path, cgroups="off"):
        failed = wait_for_status(db, run_id, "failed", 15)
    assert failed.error_message is not None
    assert failed.error_message.startswith("this worker cannot enforce memory_max_mb")
    assert output_of(db, run_id) == ""


# About 0.5 s of CPU and 200 MB touched, then exit: a known workload.
WORKLOAD = (
    "import time\n"
    "data = b'x' * (200 << 20)\n"
    "end = time.process_time() + 0.5\n"
    "while time.process_time() < end: pass\n"
)


def time_v(code: str) -> tuple[float, float]:
    """(CPU seconds, max RSS MB) of ``python -c code`` as /usr/bin/time -v reports them."""
    if not Path("/usr/bin/time").exists():
        unavailable("/usr/bin/time", "install the Debian package time")
    done = subprocess.run(
        ["/usr/bin/time", "-v", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = dict(line.strip().rsplit(": ", 1) for line in done.stderr.splitlines() if ": " in line)
    cpu = float(report["User time (seconds)"]) + float(report["System time (seconds)"])
    return cpu, int(report["Maximum resident set size (kbytes)"]) / 1024


@pytest.mark.parametrize("cgroups", MODES)
def test_cpu_seconds_and_max_rss_match_time_v_within_20_percent(
    db: Database, tmp_path: Path, cgroups: str
) -> None:
    run_id = add_run(db, python_task(db, WORKLOAD))
    with running_worker(db, tmp_path, cgroups=cgroups):
        run = wait_for_status(db, run_id, "completed", 60)
    cpu, rss = time_v(WORKLOAD)
    assert run.cpu_seconds is not None and run.max_rss_mb is not None
    assert abs(run.cpu_seconds - cpu) <= 0.2 * cpu, (run.cpu_seconds, cpu)
    assert abs(run.max_rss_mb - rss) <= 0.2 * rss, (run.max_rss_mb, rss)


def test_a_run_is_not_charged_with_the_worker_s_memory(db: Database, tmp_path: Path) -> None:
    # Linux starts a child's ru_maxrss at the memory of the process it was forked
    # from: a worker bigger than its runs must not show up as their peak.
    small = add_run(db, make_task(db, "sleep 0.3; echo small"))
    big = add_run(db, python_task(db, WORKLOAD))
    ballast = bytearray(os.urandom(1 << 20)) * 400  # the worker: 400 MB more
    with running_worker(db, tmp_path, cgroups="off"):
        small_run = wait_for_status(db, small, "completed", 30)
        big_run = wait_for_status(db, big, "completed", 60)
    del ballast
    _, rss = time_v(WORKLOAD)
    assert small_run.max_rss_mb is not None and small_run.max_rss_mb < 50, small_run.max_rss_mb
    assert big_run.max_rss_mb is not None
    assert abs(big_run.max_rss_mb - rss) <= 0.2 * rss, (big_run.max_rss_mb, rss)


def test_pids_max_stops_a_fork_bomb_at_the_limit_and_the_worker_carries_on(
    db: Database, tmp_path: Path
) -> None:
    # 40 sleepers asked for, 16 processes allowed: forks beyond the limit fail.
    script = (
        "import os, subprocess, time\n"
        "started = 0\n"
        "for _ in range(40):\n"
        "    try:\n"
        "        subprocess.Popen(['sleep', '5'])\n"
        "        started += 1\n"
        "    except OSError:\n"
        "        pass\n"
        "print(started, flush=True)\n"
        "os._exit(0)\n"
    )
    bomb = add_run(db, python_task(db, script, pids_max=16))
    with running_worker(db, tmp_path) as worker:
        done = wait_for_status(db, bomb, {"completed", "failed"}, 30)
        after = add_run(db, make_task(db, "echo still working"))
        wait_for_status(db, after, "completed", 15)
        assert worker.join(0) is False
    assert done.status == "completed", (done.error_message, output_of(db, bomb))
    started = int(output_of(db, bomb).strip())
    assert 0 < started < 16, started


def test_cpu_max_holds_a_busy_run_to_its_share(db: Database, tmp_path: Path) -> None:
    spin = "import time\nend = time.monotonic() + 2\nwhile time.monotonic() < end: pass\n"
    limited = add_run(db, python_task(db, spin, cpu_max=0.05))
    free = add_run(db, python_task(db, spin))  # side by side, for what this host gives
    with running_worker(db, tmp_path):
        limited_run = wait_for_status(db, limited, "completed", 30)
        free_run = wait_for_status(db, free, "completed", 30)
    assert limited_run.cpu_seconds is not None and free_run.cpu_seconds is not None
    # 2 s at a twentieth of a core: about 0.1 s of CPU (and Python's start), whatever
    # the unlimited one got on this host.
    assert limited_run.cpu_seconds <= 0.2, limited_run.cpu_seconds
    assert free_run.cpu_seconds >= 2 * limited_run.cpu_seconds, (
        free_run.cpu_seconds,
        limited_run.cpu_seconds,
    )
