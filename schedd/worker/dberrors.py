"""Database errors as the worker logs them: one line, no SQL, no parameters."""

from __future__ import annotations


def describe(exc: BaseException) -> str:
    """The driver's first line for ``exc`` (SQLAlchemy wraps it in ``orig``)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
