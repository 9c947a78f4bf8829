"""first_line: the one operator-facing line every layer logs for a driver error."""

from __future__ import annotations

import sqlalchemy as sa

from schedd.errors import first_line


def test_keeps_the_driver_line_and_drops_the_sql_and_parameters() -> None:
    exc = sa.exc.OperationalError(
        "SELECT secret FROM t WHERE k = %(k)s", {"k": "hunter2"}, Exception("connection refused")
    )
    assert first_line(exc) == "connection refused"
    assert "hunter2" not in first_line(exc)


def test_multi_line_messages_give_their_first_line() -> None:
    assert first_line(ValueError("first\nsecond")) == "first"


def test_an_empty_message_still_says_what_happened() -> None:
    assert first_line(ConnectionError()) == "ConnectionError()"
