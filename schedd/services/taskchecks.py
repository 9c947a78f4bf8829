"""Checks of what a task runs that need the executor's view of its command.

A python command that cannot be split is invalid (InvalidInput). A script that is not
there is only a warning at create time: the API host may not be where the task runs,
and the script may be deployed after the task. The worker fails the run, naming it.
"""

from __future__ import annotations

from schedd.errors import InvalidInput
from schedd.executors.pycommand import CommandProblem, missing_script, parse
from schedd.models import Executor


def check_python_command(executor: str, command: str) -> None:
    """InvalidInput naming ``command`` when a python command has no argv."""
    if executor != Executor.python:
        return
    try:
        parse(command)
    except CommandProblem as exc:
        raise InvalidInput(f"command: {exc}", field="command") from None


def create_warnings(
    executor: str, command: str, working_dir: str | None, worker_directory: str | None
) -> list[str]:
    """What may stop a new task from running, as far as this host can see.

    A relative script is looked for in the task's ``working_dir``, else in the
    configured ``worker.working_directory``; with neither (runs start in the run user's
    home) nothing is said.
    """
    if executor != Executor.python:
        return []
    problem = missing_script(parse(command), working_dir or worker_directory)
    if problem is None:
        return []
    return [f"{problem}: runs of this task will fail until it is there"]
