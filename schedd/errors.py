"""The error hierarchy every layer shares.

Each error maps once to an HTTP status (api) and once to a CLI exit code (schedctl).
Messages are written for operators: one sentence that names what is wrong.
"""

from __future__ import annotations


class SchedError(Exception):
    """Base of every error sched reports to a user."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class InvalidInput(SchedError):
    """The request is malformed or violates a rule (bad cron, cycle, out of range)."""

    code = "invalid_input"


class NotFound(SchedError):
    """The named task, run, worker or key does not exist."""

    code = "not_found"


class Conflict(SchedError):
    """The request clashes with current state (duplicate name, run already finished)."""

    code = "conflict"


class Unauthorized(SchedError):
    """No credentials, or credentials that are invalid, expired or revoked."""

    code = "unauthorized"


class Forbidden(SchedError):
    """Valid credentials without the scope the operation needs."""

    code = "forbidden"


class Unavailable(SchedError):
    """A service the operation needs (database, broker) cannot be reached."""

    code = "unavailable"


class ConfigError(SchedError):
    """A configuration file, variable or flag is invalid.

    ``source`` is the file path or the environment variable that held the bad value,
    ``key`` the dotted key (``database.url``); ``str()`` gives the one-line message.
    """

    code = "config_error"

    def __init__(self, source: str, key: str | None, reason: str) -> None:
        where = f"{source}: {key}: " if key else f"{source}: "
        super().__init__(where + reason, field=key)
        self.source = source
        self.key = key
        self.reason = reason


def first_line(exc: BaseException) -> str:
    """One line for an operator about ``exc``: the driver's first line, never SQL.

    SQLAlchemy wraps the driver's error in ``orig`` and appends the statement and its
    parameters on later lines; those are left out (they may hold secrets).
    """
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else repr(exc)
