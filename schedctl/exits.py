"""Exit codes of schedctl: one name per outcome, mapped once from the error hierarchy.

Scripts branch on these, and the man page documents them (EXIT STATUS is generated
from :data:`DESCRIPTIONS`). Usage errors keep Click's 2, as argparse, getopt tools and
shells do; the API's refusals take the small numbers (3-7, 7 for HTTP 429); the others
follow sysexits(3) where it has a word for them (65 bad input,
69 unavailable, 70 internal, 75 temporary failure, 78 configuration), and 124 is
timeout(1)'s.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from schedctl.client import NotSupported, RateLimited, ServerError
from schedd.errors import (
    ConfigError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    SchedError,
    Unauthorized,
    Unavailable,
)


class WaitTimedOut(SchedError):
    """`--wait --timeout` expired before the run ended (the run goes on)."""

    code = "timeout"


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
    UNAUTHORIZED = 4
    FORBIDDEN = 5
    CONFLICT = 6
    RATE_LIMITED = 7
    INVALID_INPUT = 65
    UNAVAILABLE = 69
    INTERNAL = 70
    RUN_LOST = 75
    CONFIG = 78
    TIMEOUT = 124
    RUN_CANCELLED = 125
    INTERRUPTED = 130


DESCRIPTIONS: dict[ExitStatus, str] = {
    ExitStatus.OK: "Success.",
    ExitStatus.ERROR: "The command ran and reports a failure: the service is unhealthy, "
    "a run waited for failed without an exit code of its own, or a question (db downgrade) "
    "was not confirmed.",
    ExitStatus.USAGE: "Bad command line: unknown command or option, missing or malformed argument.",
    ExitStatus.NOT_FOUND: "The task, run, worker or API key does not exist.",
    ExitStatus.UNAUTHORIZED: "No credentials, or a token or API key that is invalid, expired "
    "or revoked.",
    ExitStatus.FORBIDDEN: "The credentials lack the scope the operation needs.",
    ExitStatus.CONFLICT: "The request clashes with the current state: a duplicate name, a run "
    "that already ended, a task others depend on.",
    ExitStatus.RATE_LIMITED: "Too many failed authentications from this address or for this "
    "key (HTTP 429): the API refuses to authenticate anyone from here until the time the "
    "message names (Retry-After) has passed; then retry with a valid credential.",
    ExitStatus.INVALID_INPUT: "Invalid input: a bad cron expression, time zone or field value, "
    "a dependency cycle, a task file that is not valid TOML.",
    ExitStatus.UNAVAILABLE: "The API server or the database cannot be reached, or the database "
    "schema is not at this version's revision.",
    ExitStatus.INTERNAL: "An internal error in schedctl or the server (run with --debug for the "
    "traceback).",
    ExitStatus.RUN_LOST: "task trigger --wait: the run was lost (its worker died); it may be "
    "retried.",
    ExitStatus.CONFIG: "A configuration file or variable is invalid.",
    ExitStatus.TIMEOUT: "task trigger --wait: the run timed out, or --timeout expired before it "
    "ended (the run goes on).",
    ExitStatus.RUN_CANCELLED: "task trigger --wait: the run was cancelled.",
    ExitStatus.INTERRUPTED: "Interrupted (Ctrl-C).",
}

# Most specific first: ConfigError and the client's own errors subclass these.
_BY_ERROR: tuple[tuple[type[SchedError], ExitStatus], ...] = (
    (ConfigError, ExitStatus.CONFIG),
    (NotSupported, ExitStatus.USAGE),
    (ServerError, ExitStatus.INTERNAL),
    (RateLimited, ExitStatus.RATE_LIMITED),
    (WaitTimedOut, ExitStatus.TIMEOUT),
    (NotFound, ExitStatus.NOT_FOUND),
    (Unauthorized, ExitStatus.UNAUTHORIZED),
    (Forbidden, ExitStatus.FORBIDDEN),
    (Conflict, ExitStatus.CONFLICT),
    (InvalidInput, ExitStatus.INVALID_INPUT),
    (Unavailable, ExitStatus.UNAVAILABLE),
)


def for_error(error: BaseException) -> ExitStatus:
    """The exit status for an error that reached the top of a command."""
    for kind, status in _BY_ERROR:
        if isinstance(error, kind):
            return status
    if isinstance(error, SchedError):
        return ExitStatus.ERROR
    return ExitStatus.INTERNAL


def for_run(run: dict[str, Any]) -> int:
    """What `task trigger --wait` exits with once the run has ended.

    The run's own exit code when it has one (completed or failed); otherwise a named
    code for how it ended: timeout 124, cancelled 125, lost 75, skipped as a conflict,
    a failure without an exit code (an http task, a command that could not start) 1.
    """
    status = run["status"]
    if status == "timeout":
        return ExitStatus.TIMEOUT
    if status == "cancelled":
        return ExitStatus.RUN_CANCELLED
    if status == "lost":
        return ExitStatus.RUN_LOST
    if status == "skipped":
        return ExitStatus.CONFLICT
    code = run.get("exit_code")
    if isinstance(code, int):
        # Killed by signal N: the shell's 128 + N, not Python's -N.
        return 128 - code if code < 0 else code & 0xFF
    return ExitStatus.OK if status == "completed" else ExitStatus.ERROR
