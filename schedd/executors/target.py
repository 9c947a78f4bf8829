"""What a function task may name and pass: ``package.module:function`` and JSON arguments.

The command of a function task is input from whoever may write tasks, and the worker
imports what it names, so its shape is checked strictly when the task is created or
changed (and again before each call): ASCII Python identifiers separated by dots, one
colon between the module and the function, no keywords, no relative imports, and no
dunder names (``os:__class__...`` walks would reach anything). The arguments stay the
seed's list of strings; each one is a JSON document, decoded into one positional
argument (``["1", "\\"a\\"", "{\\"k\\": [2]}"]`` calls ``f(1, "a", {"k": [2]})``).
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Sequence

MAX_TARGET = 500
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
EXAMPLE = "'package.module:function'"


def _part_problem(part: str, where: str) -> str | None:
    if not part:
        return f"an empty name in the {where}"
    if not _IDENTIFIER.match(part):
        return f"{part!r} in the {where} is not a Python identifier (ASCII letters, digits, _)"
    if keyword.iskeyword(part):
        return f"{part!r} in the {where} is a Python keyword"
    if part.startswith("__"):
        return f"{part!r} in the {where}: names starting with '__' are not allowed"
    return None


def target_problem(command: str) -> str | None:
    """Why ``command`` is not a ``package.module:function`` target, or None if it is."""
    if len(command) > MAX_TARGET:
        return f"at most {MAX_TARGET} characters for a function target, got {len(command)}"
    if command.count(":") != 1:
        return f"expected {EXAMPLE} with exactly one ':', got {command!r}"
    module, function = command.split(":")
    for path, where in ((module, "module path"), (function, "function name")):
        if not path:
            return f"expected {EXAMPLE}, the {where} is empty in {command!r}"
        for part in path.split("."):
            problem = _part_problem(part, where)
            if problem is not None:
                return f"{problem}; expected {EXAMPLE}"
    return None


def arguments_problem(arguments: Sequence[str]) -> str | None:
    """Why an argument of a function task is not JSON, or None if all are."""
    for index, text in enumerate(arguments):
        try:
            json.loads(text)
        except ValueError as exc:
            return (
                f"arguments[{index}] is not JSON ({exc}); a function task's arguments are "
                'JSON documents, e.g. "42", "\\"text\\"" or "{\\"key\\": 1}"'
            )
    return None
