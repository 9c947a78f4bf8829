"""Cron expressions in words (the dashboard's task page)."""

from __future__ import annotations

import pytest

from schedd.cronfields import CronError
from schedd.crontext import describe


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 0 9 * * 1-5", "at 09:00, on Monday through Friday"),
        ("0 2 * * *", "at 02:00, every day"),
        ("0 */5 * * * *", "every 5 minutes"),
        ("*/10 * * * * *", "every 10 seconds"),
        ("* * * * * *", "every second"),
        ("0 0 * * * *", "every hour, on the hour"),
        ("@weekly", "at 00:00, on Sunday"),
        ("30 * * * * *", "at second 30 of every minute"),
        ("0 0 8,20 * * *", "at 08:00 and 20:00, every day"),
        ("0 30 2 1,15 * *", "at 02:30, on days 1 and 15 of the month"),
        ("0 0 0 1 JAN *", "at 00:00, on day 1 of the month, in January"),
        (
            "0 15,45 9-17 * * MON-FRI",
            "at minutes 15 and 45, during hours 9 through 17, on Monday through Friday",
        ),
        ("0 0 12 1-7 * 1", "at 12:00, on days 1 through 7 of the month or on Monday"),
    ],
)
def test_expressions_read_as_words(expression: str, words: str) -> None:
    assert describe(expression) == words


def test_an_invalid_expression_is_refused_naming_the_field() -> None:
    with pytest.raises(CronError, match="hour field"):
        describe("0 0 25 * * *")
