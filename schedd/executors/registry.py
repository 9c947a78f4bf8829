"""The executors by name: ``shell``, ``python``, ``http``.

A new executor is one module with an :class:`~schedd.executors.base.Executor` subclass
and one entry here (and in ``config.EXECUTOR_TYPES``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from schedd.config import WorkerSettings
from schedd.executors.base import Executor
from schedd.executors.guard import Guard
from schedd.executors.http import HttpExecutor
from schedd.executors.python import PythonExecutor
from schedd.executors.shell import ShellExecutor

Factory = Callable[[WorkerSettings, Guard | None], Executor]

EXECUTORS: dict[str, Factory] = {
    "shell": ShellExecutor,
    "python": PythonExecutor,
    "http": lambda settings, _guard: HttpExecutor(settings),
}


def create_executors(
    settings: WorkerSettings, names: Iterable[str], guard: Guard | None = None
) -> dict[str, Executor]:
    """The executors named (a worker's executor_types); KeyError names an unknown one."""
    return {name: EXECUTORS[name](settings, guard) for name in names}
