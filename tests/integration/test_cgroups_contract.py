"""Every cgroup implementation keeps one contract (real cgroups; CI runs as root).

cgroup2 is exercised on the v2 hierarchy this host has (at /sys/fs/cgroup/unified on
a hybrid host, /sys/fs/cgroup on a pure v2 one), hybrid on the v1 controllers beside
it, and the fallback everywhere.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from schedd.executors import cgroups as cg
from schedd.executors.cgroups import CgroupError, Cgroups, Limits, NoCgroups
from schedd.executors.cgroupsv2 import HybridCgroups, V2Cgroups, detect
from schedd.executors.guard import Guard
from schedd.executors.launch import launch_command
from tests.services import unavailable
from tests.workerkit import alive, wait_until

ESCAPING = "setsid sleep 300 & (sleep 300 &) ; echo started; exec sleep 300"


def _v2_mount() -> Path | None:
    for path in (cg.MOUNT, cg.MOUNT / "unified"):
        if (path / "cgroup.procs").exists() and (path / "cgroup.subtree_control").exists():
            return path
    return None


@pytest.fixture(params=["cgroup2", "hybrid"])
def tree(request: pytest.FixtureRequest) -> Iterator[Cgroups]:
    name = f"schedtest-{uuid.uuid4().hex[:8]}"
    if request.param == "cgroup2":
        mount = _v2_mount()
        if mount is None:
            unavailable("cgroup v2", "no cgroup v2 hierarchy on this host")
        base = mount / name
        try:
            base.mkdir()
        except OSError as exc:
            unavailable("cgroup v2", f"cannot make {base}: {exc.strerror}")
        yield V2Cgroups(base)
        base.rmdir()
    else:
        found = detect("auto", name, "w")
        if not isinstance(found, HybridCgroups):
            unavailable("hybrid cgroups", f"this host gives mode {found.mode} (needs root, v1)")
        yield found
        found.close()
        for hierarchy in {found.unified, *found.v1.values()}:
            if hierarchy is not None:
                hierarchy.parent.rmdir()


def start_in(run_cgroup: cg.RunCgroup, shell: str) -> subprocess.Popen[str]:
    command, preexec = launch_command(["/bin/sh", "-c", shell], None, run_cgroup.procs_files)
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=preexec
    )
    assert proc.stdout is not None and proc.stdout.readline() == "started\n"
    return proc


def test_a_run_cgroup_holds_every_process_and_kill_ends_them_all(tree: Cgroups) -> None:
    run = tree.create(f"run-{uuid.uuid4().hex[:6]}", Limits())
    assert run is not None
    proc = start_in(run, ESCAPING)
    try:
        assert wait_until(lambda: len(run.pids()) >= 3, 5), run.pids()
        pids = run.pids()
        assert run.populated()
        run.kill()
        assert wait_until(lambda: not run.populated(), 2)
        proc.wait(5)
        assert not any(alive(pid) for pid in pids)
    finally:
        assert proc.stdout is not None
        proc.stdout.close()
        proc.wait(5)
        run.remove()
    assert not run.directories[0].exists()


def test_a_run_cgroup_counts_its_cpu_time(tree: Cgroups) -> None:
    """Within 20% of what the kernel's wait4 says the same processes used."""
    run = tree.create(f"run-{uuid.uuid4().hex[:6]}", Limits())
    assert run is not None
    busy = "echo started; i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"
    proc = start_in(run, busy)
    _, _, rusage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    assert proc.stdout is not None
    proc.stdout.close()
    usage = run.usage()
    run.remove()
    measured = rusage.ru_utime + rusage.ru_stime
    assert measured > 0.05
    assert usage.cpu_seconds is not None
    assert abs(usage.cpu_seconds - measured) <= 0.2 * measured + 0.02, (usage, measured)


def test_a_limit_without_its_controller_is_refused_with_the_field(tree: Cgroups) -> None:
    missing = {"memory", "cpu", "pids"} - tree.controllers()
    if not missing:
        pytest.skip(f"{tree.mode} here has every controller")
    field = {"memory": "memory_max_mb", "cpu": "cpu_max", "pids": "pids_max"}[sorted(missing)[0]]
    limits = Limits(**{field: 1})  # type: ignore[arg-type]
    with pytest.raises(CgroupError, match=f"cannot enforce {field}"):
        tree.create("never-made", limits)


def test_the_fallback_makes_no_cgroup_and_refuses_limits() -> None:
    assert NoCgroups().create("run-1", Limits()) is None
    with pytest.raises(CgroupError, match="cannot enforce memory_max_mb .*mode none"):
        NoCgroups().create("run-1", Limits(memory_max_mb=64))


def test_the_guard_kills_a_registered_cgroup_when_the_worker_is_fenced(tree: Cgroups) -> None:
    run = tree.create(f"run-{uuid.uuid4().hex[:6]}", Limits())
    assert run is not None
    proc = start_in(run, ESCAPING)
    guard = Guard()
    guard.start(fence_seconds=0.5, ok_at=time.monotonic())
    try:
        assert wait_until(lambda: len(run.pids()) >= 3, 5)
        pids = run.pids()
        guard.add(proc.pid, str(run.kill_directory))
        assert wait_until(lambda: not run.populated(), 3)
        assert not any(alive(pid) for pid in pids)
    finally:
        guard.close()
        assert proc.stdout is not None
        proc.stdout.close()
        proc.kill()
        proc.wait(5)
        run.remove()
