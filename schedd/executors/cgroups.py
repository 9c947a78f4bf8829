"""One cgroup per run: where the worker can make cgroups, every run gets its own.

One interface, :class:`Cgroups` (the worker's cgroup tree) making :class:`RunCgroup`
(one run's), with three implementations chosen once at worker start by :func:`detect`:

- ``cgroup2`` (pure v2, the production target: systemd with ``Delegate=yes``, or
  ``worker.cgroup_root``): kill by ``cgroup.kill``; limits ``memory.max`` (and
  ``memory.swap.max`` 0), ``cpu.max``, ``pids.max``; cost from ``cpu.stat``
  ``usage_usec`` and ``memory.peak``; out-of-memory kills from ``memory.events``.
- ``hybrid`` (v1 controllers beside a v2 hierarchy without controllers, the test and
  CI hosts): the run's cgroup is made in the v2 hierarchy (``cgroup.kill``,
  ``cgroup.events``) and in each v1 controller it needs: ``memory.limit_in_bytes``
  (and ``memory.memsw.limit_in_bytes``), ``cpu.cfs_quota_us``, ``pids.max``;
  ``cpuacct.usage``, ``memory.max_usage_in_bytes``, ``memory.oom_control``. Without
  a v2 ``cgroup.kill`` the v1 freezer freezes the run, kills every process and thaws.
- ``none``: no cgroup could be made (or ``worker.cgroups = "off"``): the process-group
  kill of :mod:`.process` and ``wait4`` rusage (the fallback).

A run's first process joins every one of its cgroups before the task runs (see
:mod:`.launch`), so everything the task starts, whatever session or process group it
moves to, is in the cgroup and dies with it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

log = logging.getLogger("schedd.executors.cgroups")

MOUNT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000
MB = 1024 * 1024


class CgroupError(Exception):
    """A run's cgroup could not be made or limited; the message says why."""


@dataclass(frozen=True)
class Limits:
    """A task's resource limits; None: unlimited."""

    memory_max_mb: int | None = None
    cpu_max: float | None = None  # cores, fractional
    pids_max: int | None = None

    def wanted(self) -> dict[str, str]:
        """Controller -> the task field that needs it."""
        need = {}
        if self.memory_max_mb is not None:
            need["memory"] = "memory_max_mb"
        if self.cpu_max is not None:
            need["cpu"] = "cpu_max"
        if self.pids_max is not None:
            need["pids"] = "pids_max"
        return need


@dataclass(frozen=True)
class Usage:
    """What a run's cgroup says it used."""

    cpu_seconds: float | None = None
    max_rss_mb: float | None = None
    oom_kills: int = 0


def _write(path: Path, value: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(value)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except OSError:
        return ""


def _keyed(text: str) -> dict[str, str]:
    return dict(line.split(None, 1) for line in text.splitlines() if " " in line)


def pids_of(directory: Path) -> list[int]:
    return [int(p) for p in _read(directory / "cgroup.procs").split() if p.isdigit()]


def kill_directory(directory: Path) -> None:
    """SIGKILL every process of one cgroup: ``cgroup.kill`` where the kernel has it,
    else freeze (v1 freezer or v2 cgroup.freeze), kill each process, thaw. Used by
    the worker and by the guard (which needs nothing but the path)."""
    if (directory / "cgroup.kill").exists():
        with contextlib.suppress(OSError):
            _write(directory / "cgroup.kill", "1")
            return
    freeze = directory / "cgroup.freeze"
    state = directory / "freezer.state"
    with contextlib.suppress(OSError):
        if freeze.exists():
            _write(freeze, "1")
        elif state.exists():
            _write(state, "FROZEN")
    for _ in range(3):
        pids = pids_of(directory)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        if freeze.exists():
            _write(freeze, "0")
        elif state.exists():
            _write(state, "THAWED")


class RunCgroup(ABC):
    """One run's cgroup (in one or several hierarchies)."""

    def __init__(self, directories: list[Path], limits: Limits) -> None:
        self.directories = directories
        self.limits = limits
        self.name = directories[0].name

    def owns(self, proc_cgroup: str) -> bool:
        """Whether a ``/proc/PID/cgroup`` text puts the process in this run's cgroup
        (zombies keep naming the cgroup they died in)."""
        return any(line.rstrip().endswith("/" + self.name) for line in proc_cgroup.splitlines())

    @property
    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files the run's first process writes itself into."""
        return [str(d / "cgroup.procs") for d in self.directories]

    @property
    def kill_directory(self) -> Path:
        """The directory whose processes are the whole run (the guard kills it)."""
        return self.directories[0]

    def kill(self) -> None:
        kill_directory(self.kill_directory)

    def pids(self) -> list[int]:
        return pids_of(self.kill_directory)

    def populated(self) -> bool:
        events = _keyed(_read(self.kill_directory / "cgroup.events"))
        if "populated" in events:
            return events["populated"].strip() != "0"
        return bool(self.pids())

    @abstractmethod
    def usage(self) -> Usage: ...

    def remove(self) -> None:
        """Remove the (empty) cgroup. A directory the kernel still holds right after
        the last exit is retried later (:func:`remove_leftovers`), never waited for."""
        for directory in reversed(self.directories):
            try:
                directory.rmdir()
            except FileNotFoundError:
                continue
            except OSError:
                with _leftovers_lock:
                    _leftovers.append((directory, time.monotonic()))


_leftovers: list[tuple[Path, float]] = []
_leftovers_lock = threading.Lock()


def remove_leftovers(give_up_after: float = 60.0) -> None:
    """Retry removing run cgroups that were busy when their run ended."""
    with _leftovers_lock:
        pending = list(_leftovers)
        _leftovers.clear()
    keep = []
    for directory, since in pending:
        try:
            directory.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            if time.monotonic() - since < give_up_after:
                keep.append((directory, since))
            else:
                log.warning("cannot remove the run cgroup %s", directory)
    with _leftovers_lock:
        _leftovers.extend(keep)


class Cgroups(ABC):
    """The worker's cgroup tree: where run cgroups are made."""

    mode: ClassVar[str]

    @abstractmethod
    def controllers(self) -> set[str]:
        """Which of memory, cpu, pids this tree can limit."""

    @abstractmethod
    def create(self, name: str, limits: Limits) -> RunCgroup | None:
        """A new run cgroup with ``limits``; None in the fallback mode. CgroupError
        when it cannot be made, or a limit needs a controller this tree lacks."""

    def close(self) -> None:
        """Remove what the worker made for itself at start (best effort)."""
        remove_leftovers(give_up_after=0)

    def check(self, limits: Limits) -> None:
        missing = {c: f for c, f in limits.wanted().items() if c not in self.controllers()}
        if missing:
            fields = ", ".join(sorted(missing.values()))
            raise CgroupError(
                f"this worker cannot enforce {fields} (cgroup mode {self.mode}, no "
                f"{'/'.join(sorted(missing))} controller): the run is not started"
            )


class NoCgroups(Cgroups):
    """The fallback: no cgroup; process-group kills, wait4 rusage."""

    mode = "none"

    def controllers(self) -> set[str]:
        return set()

    def create(self, name: str, limits: Limits) -> RunCgroup | None:
        self.check(limits)
        return None


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise CgroupError(f"cannot make the run cgroup {path}: {exc.strerror}") from None


@contextlib.contextmanager
def _cleanup_on_error(directories: list[Path]) -> Iterator[None]:
    try:
        yield
    except BaseException:
        for directory in reversed(directories):
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
