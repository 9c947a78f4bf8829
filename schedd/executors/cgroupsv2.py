"""The cgroup v2 and hybrid implementations of :class:`~.cgroups.Cgroups`, and
:func:`detect`, which picks one when the worker starts."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from schedd.executors.cgroups import (
    CPU_PERIOD_US,
    MB,
    MOUNT,
    CgroupError,
    Cgroups,
    Limits,
    NoCgroups,
    RunCgroup,
    Usage,
    _cleanup_on_error,
    _keyed,
    _mkdir,
    _read,
    _write,
    remove_leftovers,
)

log = logging.getLogger("schedd.executors.cgroups")
V1_CONTROLLERS = {"memory": "memory", "cpu": "cpu", "cpuacct": "cpuacct", "pids": "pids"}


def _number(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


class V2RunCgroup(RunCgroup):
    def usage(self) -> Usage:
        directory = self.directories[0]
        stat = _keyed(_read(directory / "cpu.stat"))
        usec = _number(stat.get("usage_usec", ""))
        peak = _number(_read(directory / "memory.peak"))
        events = _keyed(_read(directory / "memory.events"))
        return Usage(
            cpu_seconds=usec / 1e6 if usec is not None else None,
            max_rss_mb=peak / MB if peak is not None else None,
            oom_kills=_number(events.get("oom_kill", "")) or 0,
        )


class V2Cgroups(Cgroups):
    """Run cgroups under ``base`` in a cgroup v2 hierarchy."""

    mode = "cgroup2"

    def __init__(self, base: Path) -> None:
        self.base = base
        self._controllers = set(_read(base / "cgroup.subtree_control").split()) & {
            "memory",
            "cpu",
            "pids",
        }

    def controllers(self) -> set[str]:
        return self._controllers

    def create(self, name: str, limits: Limits) -> RunCgroup | None:
        self.check(limits)
        remove_leftovers()
        directory = self.base / name
        _mkdir(directory)
        with _cleanup_on_error([directory]):
            try:
                if limits.memory_max_mb is not None:
                    _write(directory / "memory.max", str(limits.memory_max_mb * MB))
                    if (directory / "memory.swap.max").exists():
                        _write(directory / "memory.swap.max", "0")
                if limits.cpu_max is not None:
                    quota = max(1000, round(limits.cpu_max * CPU_PERIOD_US))
                    _write(directory / "cpu.max", f"{quota} {CPU_PERIOD_US}")
                if limits.pids_max is not None:
                    _write(directory / "pids.max", str(limits.pids_max))
            except OSError as exc:
                raise CgroupError(f"cannot set the limits of {directory}: {exc.strerror}") from None
        return V2RunCgroup([directory], limits)


class HybridRunCgroup(RunCgroup):
    def __init__(
        self, directories: list[Path], limits: Limits, v1: dict[str, Path], unified: Path | None
    ) -> None:
        super().__init__(directories, limits)
        self.v1 = v1
        self.unified = unified

    def usage(self) -> Usage:
        cpu: float | None = None
        if self.unified is not None:  # v2 counts CPU time without any controller
            usec = _number(_keyed(_read(self.unified / "cpu.stat")).get("usage_usec", ""))
            cpu = usec * 1000 if usec is not None else None
        elif "cpuacct" in self.v1:
            cpu = _number(_read(self.v1["cpuacct"] / "cpuacct.usage"))
        peak = None
        oom = 0
        if "memory" in self.v1:
            peak = _number(_read(self.v1["memory"] / "memory.max_usage_in_bytes"))
            oom = (
                _number(_keyed(_read(self.v1["memory"] / "memory.oom_control")).get("oom_kill", ""))
                or 0
            )
        return Usage(
            cpu_seconds=cpu / 1e9 if cpu is not None else None,
            max_rss_mb=peak / MB if peak is not None else None,
            oom_kills=oom,
        )


class HybridCgroups(Cgroups):
    """Run cgroups in the v2 hierarchy (kill, events) and in each v1 controller."""

    mode = "hybrid"

    def __init__(self, unified: Path | None, v1: dict[str, Path]) -> None:
        self.unified = unified  # the worker's base in the v2 hierarchy, or None
        self.v1 = v1  # controller name -> the worker's base in that hierarchy

    def controllers(self) -> set[str]:
        return {c for c in ("memory", "cpu", "pids") if c in self.v1}

    def close(self) -> None:
        super().close()
        for base in {self.unified, *self.v1.values()}:
            if base is not None:
                with contextlib.suppress(OSError):
                    base.rmdir()

    def create(self, name: str, limits: Limits) -> RunCgroup | None:
        self.check(limits)
        remove_leftovers()
        made: list[Path] = []
        v1: dict[str, Path] = {}
        with _cleanup_on_error(made):
            if self.unified is not None:
                _mkdir(self.unified / name)
                made.append(self.unified / name)
            for controller, base in self._joined(limits).items():
                directory = base / name
                if directory not in made:  # cpu and cpuacct may be one hierarchy
                    _mkdir(directory)
                    made.append(directory)
                v1[controller] = directory
            try:
                self._limit(v1, limits)
            except OSError as exc:
                raise CgroupError(
                    f"cannot set the limits of run cgroup {name}: {exc.strerror}"
                ) from None
        return HybridRunCgroup(
            made, limits, v1, self.unified / name if self.unified is not None else None
        )

    def _joined(self, limits: Limits) -> dict[str, Path]:
        """The v1 hierarchies a run joins: only those its limits need (and the freezer
        without a v2 tree). Every join is a cgroup migration, which on v1 takes a
        system-wide lock and waits for an RCU grace period; a run without limits
        joins only the v2 tree, whose cpu.stat counts its CPU time (its peak memory
        then comes from wait4)."""
        wanted = set(limits.wanted())
        if self.unified is None:
            wanted |= {"freezer", "cpuacct"}
        return {c: base for c, base in self.v1.items() if c in wanted}

    @staticmethod
    def _limit(v1: dict[str, Path], limits: Limits) -> None:
        if limits.memory_max_mb is not None:
            memory = v1["memory"]
            _write(memory / "memory.limit_in_bytes", str(limits.memory_max_mb * MB))
            if (memory / "memory.memsw.limit_in_bytes").exists():  # no swapping past it
                with contextlib.suppress(OSError):
                    _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory_max_mb * MB))
        if limits.cpu_max is not None:
            cpu = v1["cpu"]
            _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(max(1000, round(limits.cpu_max * CPU_PERIOD_US))))
        if limits.pids_max is not None:
            _write(v1["pids"] / "pids.max", str(limits.pids_max))


def _own_v2_path() -> str | None:
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        if line.startswith("0::"):
            return line[3:].strip()
    return None


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def detect(mode: str, root: str | None, worker_name: str) -> Cgroups:
    """The cgroup tree this worker can use; NoCgroups when it can make none.

    ``mode`` is ``worker.cgroups`` (``auto`` or ``off``); ``root`` is
    ``worker.cgroup_root``: a cgroup v2 directory to make runs under (default: this
    process's own cgroup when it is delegated to us) or, on a hybrid host, the name of
    the tree in each hierarchy (default ``sched``).
    """
    if mode == "off":
        return NoCgroups()
    try:
        if (MOUNT / "cgroup.controllers").exists():
            return _detect_v2(root)
        if (MOUNT / "memory").is_dir() or (MOUNT / "unified").is_dir():
            return _detect_hybrid(root or "sched", worker_name)
    except CgroupError as exc:
        log.warning("no cgroups for runs (%s): falling back to process groups", exc)
    return NoCgroups()


def _detect_v2(root: str | None) -> Cgroups:
    if root is not None:
        base = Path(root)
        _mkdir(base)
    else:
        own = _own_v2_path()
        if own is None:
            raise CgroupError("this process's cgroup is unknown")
        delegated = MOUNT / own.lstrip("/")
        if not _writable_dir(delegated) or own == "/":
            raise CgroupError(f"cgroup {own} is not delegated to this worker")
        # No internal processes: the worker moves itself into a leaf beside the runs.
        supervisor = delegated / "supervisor"
        _mkdir(supervisor)
        try:
            _write(supervisor / "cgroup.procs", "0")
        except OSError as exc:
            raise CgroupError(f"cannot move the worker into {supervisor}: {exc.strerror}") from None
        base = delegated / "runs"
        _enable(delegated)
        _mkdir(base)
    _enable(base)
    return V2Cgroups(base)


def _enable(directory: Path) -> None:
    available = set(_read(directory / "cgroup.controllers").split())
    for controller in ("memory", "cpu", "pids"):
        if controller in available:
            with contextlib.suppress(OSError):
                _write(directory / "cgroup.subtree_control", f"+{controller}")


def _detect_hybrid(tree: str, worker_name: str) -> Cgroups:
    name = f"{tree}/{worker_name}"
    unified = None
    if _writable_dir(MOUNT / "unified") and (MOUNT / "unified" / "cgroup.procs").exists():
        unified = MOUNT / "unified" / name
        _mkdir(unified.parent)
        _mkdir(unified)
    v1: dict[str, Path] = {}
    for controller, directory in V1_CONTROLLERS.items():
        mount = MOUNT / directory
        if _writable_dir(mount):
            base = mount.resolve() / name
            _mkdir(base.parent)
            _mkdir(base)
            v1[controller] = base
    if unified is None and not v1:
        raise CgroupError("no writable cgroup hierarchy")
    if unified is None and not (MOUNT / "freezer").is_dir():
        raise CgroupError("no cgroup.kill and no freezer to kill a run's cgroup with")
    if unified is None:
        freezer = (MOUNT / "freezer").resolve() / name
        _mkdir(freezer.parent)
        _mkdir(freezer)
        # The freezer hierarchy leads: its directory is the one killed by freezing.
        v1 = {"freezer": freezer, **v1}
    return HybridCgroups(unified, v1)
