"""The python executor: an interpreter runs the script the command names, no shell.

The command is ``python script.py [words]`` (the seed's form) or a bare script path;
:mod:`.pycommand` says how each becomes argv. The task's ``arguments`` come last. A
relative script path is resolved in the working directory; a script that is not there
fails the run before anything starts, naming it. Output is unbuffered so it can be
followed while the script runs.
"""

from __future__ import annotations

import shutil

from schedd.executors.base import RunSpec
from schedd.executors.process import ProcessExecutor
from schedd.executors.pycommand import CommandProblem, missing_script, parse


class PythonExecutor(ProcessExecutor):
    name = "python"

    def argv(self, spec: RunSpec) -> list[str]:
        return parse(spec.command).argv(self.settings.python_interpreter, tuple(spec.arguments))

    def problem(self, spec: RunSpec, cwd: str) -> str | None:
        try:
            command = parse(spec.command)
        except CommandProblem as exc:
            return f"command {exc}"
        interpreter = command.interpreter or self.settings.python_interpreter
        if shutil.which(interpreter) is None:
            return None  # run_process reports the missing program first
        return missing_script(command, cwd, runs_here=True)

    def extra_environment(self, spec: RunSpec) -> dict[str, str]:
        return {"PYTHONUNBUFFERED": "1"}
