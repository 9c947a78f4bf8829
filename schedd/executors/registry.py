"""The executors by name: ``shell``, ``python``, ``http``, ``function``.

A new executor is one module with an :class:`~schedd.executors.base.Executor` subclass
and one entry here (and in ``config.EXECUTOR_TYPES``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from schedd.config import WorkerSettings
from schedd.executors.base import Executor
from schedd.executors.cgroups import Cgroups
from schedd.executors.function import FunctionExecutor
from schedd.executors.guard import Guard
from schedd.executors.http import HttpExecutor
from schedd.executors.python import PythonExecutor
from schedd.executors.shell import ShellExecutor

# (worker settings, the process guard, the worker's cgroup tree) -> an executor.
Factory = Callable[[WorkerSettings, Guard | None, Cgroups | None], Executor]

EXECUTORS: dict[str, Factory] = {
    "shell": ShellExecutor,
    "python": PythonExecutor,
    "http": lambda settings, _guard, _cgroups: HttpExecutor(settings),
    "function": FunctionExecutor,
}


def create_executors(
    settings: WorkerSettings,
    names: Iterable[str],
    guard: Guard | None = None,
    cgroups: Cgroups | None = None,
) -> dict[str, Executor]:
    """The executors named (a worker's executor_types); KeyError names an unknown one."""
    return {name: EXECUTORS[name](settings, guard, cgroups) for name in names}
