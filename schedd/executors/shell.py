"""The shell executor: ``/bin/sh -c COMMAND`` with the task's arguments as $1..$n.

The arguments are separate argv entries after the command string (``$0`` is the task
name), never pasted into it, so ``; rm -rf ~`` in an argument is just text in ``$1``.
"""

from __future__ import annotations

from schedd.executors.base import RunSpec
from schedd.executors.process import ProcessExecutor

SHELL = "/bin/sh"


class ShellExecutor(ProcessExecutor):
    name = "shell"

    def argv(self, spec: RunSpec) -> list[str]:
        return [SHELL, "-c", spec.command, spec.task_name, *spec.arguments]
