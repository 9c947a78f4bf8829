"""Cron parsing: accepted formats, rejected input (the message names the field), API contract."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from schedd import cron, cronfields
from schedd.errors import InvalidInput


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def next_fires(expression: str, after: str, count: int = 3, tz: str = "UTC") -> list[str]:
    schedule = cron.parse(expression, tz)
    fires = schedule.between(utc(after), utc(after) + timedelta(days=3000), limit=count)
    return [fire.strftime("%Y-%m-%d %H:%M:%S") for fire in fires]


# (expression, after (UTC), the next fire times). 2025-01-03 is a Friday.
VALID = [
    ("0 */5 * * * *", "2025-01-03 10:02:30", ["2025-01-03 10:05:00", "2025-01-03 10:10:00"]),
    ("0 0 9 * * 1-5", "2025-01-03 10:00:00", ["2025-01-06 09:00:00", "2025-01-07 09:00:00"]),
    ("*/15 * * * * *", "2025-01-03 10:00:00", ["2025-01-03 10:00:15", "2025-01-03 10:00:30"]),
    ("30 5/20 * * * *", "2025-01-03 10:00:00", ["2025-01-03 10:05:30", "2025-01-03 10:25:30"]),
    ("0 0 1,13 * * *", "2025-01-03 10:00:00", ["2025-01-03 13:00:00", "2025-01-04 01:00:00"]),
    ("0 0 0 1 1 *", "2025-01-03 10:00:00", ["2026-01-01 00:00:00", "2027-01-01 00:00:00"]),
    # 5 fields: classic minute-first, fires at second 0.
    ("0 2 * * *", "2025-01-03 10:00:00", ["2025-01-04 02:00:00", "2025-01-05 02:00:00"]),
    ("*/20 * * * *", "2025-01-03 10:00:00", ["2025-01-03 10:20:00", "2025-01-03 10:40:00"]),
    ("  0\t0  12 * *   *  ", "2025-01-03 10:00:00", ["2025-01-03 12:00:00"]),
    # Names, case-insensitive, in ranges and with steps.
    ("0 0 0 1 JAN *", "2025-01-03 10:00:00", ["2026-01-01 00:00:00"]),
    ("0 0 12 * * mon-Fri", "2025-01-03 13:00:00", ["2025-01-06 12:00:00"]),
    ("0 0 0 1 jan-dec/3 *", "2025-01-03 10:00:00", ["2025-04-01 00:00:00", "2025-07-01 00:00:00"]),
    ("0 0 0 * * FRI-SUN", "2025-01-03 10:00:00", ["2025-01-04 00:00:00", "2025-01-05 00:00:00"]),
    # Weekday 0 and 7 are both Sunday (2025-01-05).
    ("0 0 0 * * 7", "2025-01-03 10:00:00", ["2025-01-05 00:00:00", "2025-01-12 00:00:00"]),
    ("0 0 0 * * 0", "2025-01-03 10:00:00", ["2025-01-05 00:00:00", "2025-01-12 00:00:00"]),
    ("0 0 0 ? * SUN", "2025-01-03 10:00:00", ["2025-01-05 00:00:00"]),
    # Both day fields restricted: EITHER matches (Vixie cron): the 1st and every Monday.
    ("0 0 0 1 * MON", "2025-01-25 00:00:00", ["2025-01-27 00:00:00", "2025-02-01 00:00:00"]),
    ("0 0 0 */10 * MON", "2025-01-07 00:00:00", ["2025-01-11 00:00:00", "2025-01-13 00:00:00"]),
    # A day-of-month that covers every day is unrestricted: Mondays only.
    ("0 0 0 1-31 * MON", "2025-01-25 00:00:00", ["2025-01-27 00:00:00", "2025-02-03 00:00:00"]),
    # Only months that have the day.
    ("0 0 0 31 * *", "2025-04-01 00:00:00", ["2025-05-31 00:00:00", "2025-07-31 00:00:00"]),
    # February 29 exists, every 4 years and not in 2100.
    ("0 0 0 29 2 *", "2025-01-01 00:00:00", ["2028-02-29 00:00:00", "2032-02-29 00:00:00"]),
    ("0 0 0 29 2 *", "2096-03-01 00:00:00", ["2104-02-29 00:00:00"]),
]


@pytest.mark.parametrize(("expression", "after", "expected"), VALID)
def test_valid_expressions_fire_at_the_expected_times(
    expression: str, after: str, expected: list[str]
) -> None:
    assert next_fires(expression, after, count=len(expected)) == expected


MACROS = [
    ("@yearly", "2026-01-01 00:00:00"),
    ("@annually", "2026-01-01 00:00:00"),
    ("@monthly", "2025-02-01 00:00:00"),
    ("@weekly", "2025-01-05 00:00:00"),  # Sunday midnight
    ("@daily", "2025-01-04 00:00:00"),
    ("@midnight", "2025-01-04 00:00:00"),
    ("@hourly", "2025-01-03 11:00:00"),
    ("@DAILY", "2025-01-04 00:00:00"),
]


@pytest.mark.parametrize(("macro", "expected"), MACROS)
def test_macros(macro: str, expected: str) -> None:
    assert next_fires(macro, "2025-01-03 10:00:00", count=1) == [expected]


# (expression, a fragment the message must contain: it names the bad field).
INVALID = [
    ("0 61 * * * *", "minute field '61' is out of range 0-59"),
    ("60 * * * * *", "second field '60' is out of range 0-59"),
    ("0 0 24 * * *", "hour field '24' is out of range 0-23"),
    ("0 0 0 0 * *", "day-of-month field '0' is out of range 1-31"),
    ("0 0 0 32 * *", "day-of-month field '32' is out of range 1-31"),
    ("0 0 0 * 13 *", "month field '13' is out of range 1-12"),
    ("0 0 0 * 0 *", "month field '0' is out of range 1-12"),
    ("0 0 0 * * 8", "day-of-week field '8' is out of range 0-7"),
    ("0 1,61 * * * *", "minute field '1,61': '61' is out of range 0-59"),
    ("0 1-61 * * * *", "minute field '1-61' has 61, which is out of range 0-59"),
    ("0 5-1 * * * *", "minute field '5-1' is a reversed range (5 > 1)"),
    ("0 0 0 * * 5-1", "day-of-week field '5-1' is a reversed range"),
    ("*/0 * * * * *", "second field '*/0' has step 0"),
    ("0 0 1-5/0 * * *", "hour field '1-5/0' has step 0"),
    ("0 */61 * * * *", "minute field '*/61' has step 61"),
    ("0 1,,2 * * * *", "minute field '1,,2' has an empty list item"),
    ("0 1, * * * *", "minute field '1,' has an empty list item"),
    ("0 0 ? * * *", "hour field '?' does not accept '?'"),
    ("0 0 0 * FOO *", "month field 'FOO' is not a number or a month name"),
    ("0 0 0 * * FOO", "day-of-week field 'FOO' is not a number or a weekday name"),
    ("0 MON * * * *", "minute field 'MON' is not a number"),
    ("0 0 0 * * MONDAY", "day-of-week field 'MONDAY' is not a valid value"),
    ("0 0 0 L * *", "day-of-month field 'L' is not a valid value"),
    ("0 0 0 15W * *", "day-of-month field '15W' is not a valid value"),
    ("0 0 0 * * 1#2", "day-of-week field '1#2' is not a valid value"),
    ("0 0 0 1-2-3 * *", "day-of-month field '1-2-3' is not a valid value"),
    ("0 0 0 * * *-5", "day-of-week field '*-5' is not a valid value"),
    ("0 0 $ * * *", "hour field '$' is not a valid value"),
    ("0 0 1_0 * * *", "hour field '1_0' is not a valid value"),  # int() would accept it
    ("0 0 \u0663 * * *", "hour field '\u0663' is not a valid value"),  # a non-ASCII digit
    ("0 0 -1 * * *", "hour field '-1' is not a valid value"),
    ("* * * *", "has 4 fields, expected 5"),
    ("0", "has 1 fields, expected 5"),
    ("0 0 0 * * * 2025", "has 7 fields, expected 5"),
    ("", "cron expression is empty"),
    ("   ", "cron expression is empty"),
    ("@reboot", "unsupported macro '@reboot'"),
    ("@every 5m", "unsupported macro '@every 5m'"),
    ("@", "unsupported macro '@'"),
    # Dates that never exist are rejected at parse time (no endless search later).
    ("0 0 0 30 2 *", "day-of-month field '30' and month field '2' never match a real date"),
    ("0 0 0 31 4,6,9,11 *", "day-of-month field '31' and month field '4,6,9,11' never match"),
    ("0 0 0 30,31 FEB *", "day-of-month field '30,31' and month field 'FEB' never match"),
]


@pytest.mark.parametrize(("expression", "fragment"), INVALID)
def test_invalid_expressions_are_rejected_naming_the_field(expression: str, fragment: str) -> None:
    with pytest.raises(cron.CronError) as caught:
        cron.parse(expression)
    assert fragment in str(caught.value)
    assert caught.value.field == "schedule"
    assert "\n" not in str(caught.value)


def test_message_format_matches_the_contract() -> None:
    with pytest.raises(cron.CronError) as caught:
        cron.validate("0 61 * * * *")
    assert str(caught.value) == (
        "cron expression '0 61 * * * *': minute field '61' is out of range 0-59"
    )


def test_cron_error_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as caught:
        cron.parse("@reboot")
    assert isinstance(caught.value, cron.CronError)
    assert caught.value.code == "invalid_input"


def test_control_characters_are_escaped_so_the_message_is_one_line() -> None:
    with pytest.raises(cron.CronError) as caught:
        cron.parse("0 0 0 * * \x1b[31m\n")
    message = str(caught.value)
    assert "\x1b" not in message
    assert "\n" not in message
    assert "day-of-week field" in message


@pytest.mark.parametrize("expression", ["0 " * 200, "*" * 1_000_000, "1," * 100_000 + "1 * * * *"])
def test_long_strings_are_rejected_before_parsing(
    expression: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused on their length alone: nothing of them is quoted, split or parsed (so a
    huge input costs nothing), and the message does not repeat them."""

    def parsing(*_: object) -> str:
        raise AssertionError("a too long expression reached the parser")

    monkeypatch.setattr(cronfields, "quote", parsing)
    with pytest.raises(cron.CronError, match="too long") as caught:
        cron.parse(expression)
    assert len(str(caught.value)) < 100


def test_the_length_limit_is_256_characters() -> None:
    longest = "0 0 0 " + "1," * 122 + "1 * *"
    assert len(longest) <= 256
    cron.validate(longest)
    with pytest.raises(cron.CronError, match="too long"):
        cron.validate(longest + " " * (257 - len(longest)))


def test_validate_accepts_good_expressions() -> None:
    cron.validate("0 */5 * * * *")
    cron.validate("@daily")


def test_non_strings_are_rejected() -> None:
    with pytest.raises(cron.CronError, match="must be a string"):
        cron.validate(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name",
    [
        "Mars/Base",
        "",
        "../etc/passwd",
        "/etc/localtime",
        "America",
        "Europe/Berlin\x00",
        "x" * 300,
        "utc ",
    ],
)
def test_unknown_time_zones_are_rejected_naming_the_timezone_field(name: str) -> None:
    with pytest.raises(cron.CronError, match="unknown time zone") as caught:
        cron.zone(name)
    assert caught.value.field == "timezone"
    with pytest.raises(cron.CronError) as caught:
        cron.parse("@daily", name)
    assert caught.value.field == "timezone"
    assert "\n" not in str(caught.value)


def test_zone_and_parse_are_cached() -> None:
    assert cron.zone("Europe/Berlin") is cron.zone("Europe/Berlin")
    assert cron.parse("0 0 9 * * 1-5", "Europe/Berlin") is cron.parse(
        "0 0 9 * * 1-5", "Europe/Berlin"
    )


def test_schedule_is_immutable_and_hashable() -> None:
    schedule = cron.parse("@daily", "Europe/Berlin")
    assert schedule.expression == "@daily"
    assert schedule.timezone == "Europe/Berlin"
    assert schedule == cron.Schedule("@daily", "Europe/Berlin")
    assert schedule != cron.Schedule("@daily", "UTC")
    assert len({schedule, cron.Schedule("@daily", "Europe/Berlin")}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.expression = "@hourly"  # type: ignore[misc]


def test_the_constructor_validates_too() -> None:
    with pytest.raises(cron.CronError):
        cron.Schedule("0 61 * * * *")


def test_next_after_is_strictly_after_and_returns_utc_whole_seconds() -> None:
    schedule = cron.parse("0 0 * * * *")
    fire = schedule.next_after(utc("2025-01-03 10:00:00"))
    assert fire == utc("2025-01-03 11:00:00")
    assert fire.tzinfo is UTC
    assert fire.microsecond == 0
    # Microseconds after a fire time: that fire time is already past.
    every_second = cron.parse("* * * * * *")
    assert every_second.next_after(utc("2025-01-03 10:00:00.500000")) == utc("2025-01-03 10:00:01")
    assert every_second.next_after(utc("2025-01-03 09:59:59.999999")) == utc("2025-01-03 10:00:00")


def test_next_after_accepts_any_time_zone_and_rejects_naive() -> None:
    schedule = cron.parse("0 0 * * * *")
    tokyo = datetime(2025, 1, 3, 19, 30, tzinfo=timezone(timedelta(hours=9)))
    assert schedule.next_after(tokyo) == utc("2025-01-03 11:00:00")
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_after(datetime(2025, 1, 3, 10, 0))


def test_iter_after_and_between() -> None:
    schedule = cron.parse("0 */15 * * * *")
    iterator = schedule.iter_after(utc("2025-01-03 10:00:00"))
    assert [next(iterator) for _ in range(3)] == [
        utc("2025-01-03 10:15:00"),
        utc("2025-01-03 10:30:00"),
        utc("2025-01-03 10:45:00"),
    ]
    # start < t <= end
    assert schedule.between(utc("2025-01-03 10:00:00"), utc("2025-01-03 10:45:00")) == [
        utc("2025-01-03 10:15:00"),
        utc("2025-01-03 10:30:00"),
        utc("2025-01-03 10:45:00"),
    ]
    assert schedule.between(utc("2025-01-03 10:00:00"), utc("2025-01-03 12:00:00"), limit=2) == [
        utc("2025-01-03 10:15:00"),
        utc("2025-01-03 10:30:00"),
    ]
    assert schedule.between(utc("2025-01-03 10:00:00"), utc("2025-01-03 12:00:00"), limit=0) == []
    assert schedule.between(utc("2025-01-03 10:00:00"), utc("2025-01-03 10:14:59")) == []
    with pytest.raises(ValueError, match="limit"):
        schedule.between(utc("2025-01-03 10:00:00"), utc("2025-01-03 12:00:00"), limit=-1)


def test_previous_at_or_before() -> None:
    weekdays = cron.parse("0 0 9 * * 1-5", "Europe/Berlin")
    # Saturday 2025-01-04: the last fire was Friday 09:00 CET.
    assert weekdays.previous_at_or_before(utc("2025-01-04 12:00:00")) == utc("2025-01-03 08:00:00")
    # "at or before": a fire time itself is returned.
    assert weekdays.previous_at_or_before(utc("2025-01-03 08:00:00")) == utc("2025-01-03 08:00:00")
    yearly = cron.parse("@yearly")
    assert yearly.previous_at_or_before(utc("2025-06-01 00:00:00")) == utc("2025-01-01 00:00:00")
    leap = cron.parse("0 0 0 29 2 *")
    assert leap.previous_at_or_before(utc("2027-06-01 00:00:00")) == utc("2024-02-29 00:00:00")


def test_the_end_of_the_calendar_is_a_clean_error() -> None:
    yearly = cron.parse("@yearly")
    with pytest.raises(ValueError, match="no fire time"):
        yearly.next_after(utc("9998-06-01 00:00:00"))
    assert list(yearly.iter_after(utc("9997-06-01 00:00:00"))) == [utc("9998-01-01 00:00:00")]


@pytest.mark.parametrize(
    "expression",
    ["0 0 0 1 1 *", "0 0 0 29 2 *", "0 0 9 * * 1-5", "*/10 * * * * *", "0 0 12 13 * FRI"],
)
def test_next_after_is_fast(expression: str) -> None:
    schedule = cron.parse(expression, "Europe/Berlin")
    start = utc("2025-02-01 00:00:00")
    schedule.next_after(start)  # warm the per-year DST table
    started = time.perf_counter()
    for _ in range(200):
        schedule.next_after(start)
    per_call = (time.perf_counter() - started) / 200
    assert per_call < 0.001, f"{expression}: {per_call * 1e6:.0f} us per next_after"
