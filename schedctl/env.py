"""The environment schedctl runs in: streams, terminals, colour, variables.

Like httpie's ``Environment``: commands never touch ``sys.stdout`` or ``os.environ``
themselves, they ask this object, so a test can hand in a fake terminal (a StringIO
that claims to be a TTY, a narrow width, NO_COLOR) and see what an operator would.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or fake stream
        return False


@dataclass
class Environment:
    """Where output goes and what the terminal can do."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout_isatty: bool | None = None
    stderr_isatty: bool | None = None
    stdin_isatty: bool | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    no_color: bool = False
    width: int | None = None

    def __post_init__(self) -> None:
        if self.stdout_isatty is None:
            self.stdout_isatty = _isatty(self.stdout)
        if self.stderr_isatty is None:
            self.stderr_isatty = _isatty(self.stderr)
        if self.stdin_isatty is None:
            self.stdin_isatty = _isatty(self.stdin)
        # https://no-color.org: present and not empty disables colour.
        if self.environ.get("NO_COLOR"):
            self.no_color = True

    def console(self, *, stderr: bool = False) -> Console:
        """A Rich console on stdout (or stderr) that honours the TTY and colour settings."""
        from rich.console import Console  # Rich loads when something is printed

        stream = self.stderr if stderr else self.stdout
        tty = bool(self.stderr_isatty if stderr else self.stdout_isatty)
        return Console(
            file=stream,
            force_terminal=tty,
            no_color=self.no_color,
            color_system="auto" if tty and not self.no_color else None,
            highlight=False,
            markup=False,  # names, tags and commands are shown as written, "[x]" included
            soft_wrap=not tty,
            width=self.width or (None if tty else 200),
            emoji=False,
        )

    def write(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def error(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()
