"""The python executor: the configured interpreter runs the script named by the command.

argv is ``[worker.python_interpreter, COMMAND, *arguments]``, no shell in between; a
relative script path is resolved in the working directory. Output is unbuffered so it
can be followed while the script runs.
"""

from __future__ import annotations

from schedd.executors.base import RunSpec
from schedd.executors.process import ProcessExecutor


class PythonExecutor(ProcessExecutor):
    name = "python"

    def argv(self, spec: RunSpec) -> list[str]:
        return [self.settings.python_interpreter, spec.command, *spec.arguments]

    def extra_environment(self, spec: RunSpec) -> dict[str, str]:
        return {"PYTHONUNBUFFERED": "1"}
