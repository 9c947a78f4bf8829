"""A python task's command: which interpreter, which script, which words after it.

Two forms are accepted:

- the seed's, ``python process_data.py --verbose``: a first word ``python`` or
  ``python3`` (or a path or name ending in ``python``, ``python3`` or ``python3.N``)
  names the interpreter, and the rest is split as a POSIX shell would split it
  (``shlex``; quotes group, nothing is expanded, no shell runs). ``python`` and
  ``python3`` alone mean the worker's ``python_interpreter``; any other interpreter
  word (``/opt/venv/bin/python3``, ``python3.12``) is run as written.
- a bare script path, ``/srv/jobs/report.py``: the whole command is the path, as
  before (so a path with spaces keeps working).

The task's ``arguments`` follow the command's own words in argv.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass

_INTERPRETER = re.compile(r"python(3(\.\d+)?)?")
_CONFIGURED = frozenset({"python", "python3"})


class CommandProblem(ValueError):
    """A python command that cannot be turned into argv (one sentence)."""


@dataclass(frozen=True)
class PythonCommand:
    interpreter: str | None  # None: the worker's configured python_interpreter
    words: tuple[str, ...]  # the script (or -m module, -c code) and its own arguments

    @property
    def script(self) -> str | None:
        """The script file the interpreter opens, when the first word is one."""
        if not self.words or self.words[0].startswith("-"):
            return None
        return self.words[0]

    def argv(self, configured: str, arguments: list[str] | tuple[str, ...]) -> list[str]:
        return [self.interpreter or configured, *self.words, *arguments]


def names_interpreter(word: str) -> bool:
    return _INTERPRETER.fullmatch(os.path.basename(word)) is not None


def parse(command: str) -> PythonCommand:
    """The command's interpreter and words; CommandProblem says why it has none."""
    first = command.split(None, 1)[0] if command.strip() else ""
    if not names_interpreter(first):
        return PythonCommand(None, (command,))
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise CommandProblem(f"cannot be split as a shell would split it: {exc}") from None
    interpreter, rest = words[0], tuple(words[1:])
    if not rest:
        raise CommandProblem(f"names the interpreter ({interpreter}) but no script to run")
    return PythonCommand(None if interpreter in _CONFIGURED else interpreter, rest)


def missing_script(
    command: PythonCommand, directory: str | None, *, runs_here: bool = False
) -> str | None:
    """Why the command's script is not there, if this host can tell; else None.

    A relative script is looked up in ``directory`` (the run's working directory; None:
    unknown, nothing is said). Unless ``runs_here`` (the worker about to run it), only a
    directory this host sees is judged: a path that lives on the workers alone is not
    reported missing. Permission problems are left to the interpreter, which reports
    them itself.
    """
    script = command.script
    if script is None:
        return None
    if os.path.isabs(script):
        path, visible = script, os.path.dirname(script)
    elif directory is not None:
        path, visible = os.path.join(directory, script), directory
    else:
        return None
    if not runs_here and not os.path.isdir(visible):
        return None
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if os.path.isabs(script):
            return f"python script {script} does not exist"
        return f"python script {script} does not exist in {directory}"
    except OSError:
        return None
    return None
