"""Cron field parsing and wall-clock matching (the calendar half of :mod:`schedd.cron`).

``parse_fields`` turns an expression into a :class:`CronSpec`: every field expanded once
into sorted tuples / sets, so that finding the next matching *local wall time* is a few
bisects per call instead of a second-by-second scan. Time zones and DST are not handled
here; :mod:`schedd.cron` maps wall times to UTC instants.

Grammar, per field (``,``-separated items): ``*``, ``N``, ``N-M``, ``*/S``, ``N-M/S``,
``N/S`` (N to the field's maximum, step S), month names ``JAN``-``DEC`` and weekday
names ``SUN``-``SAT`` (case-insensitive) wherever a number may stand, ``?`` (same as ``*``)
in day-of-month and day-of-week only. Weekday 0 and 7 are Sunday; a range ending in the
name ``SUN`` (``FRI-SUN``) ends on Sunday 7. Reversed ranges (``5-1``) are rejected, not
wrapped; a step must be 1 to the number of values of the field.
"""

from __future__ import annotations

import calendar
import functools
import re
from bisect import bisect_left
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from schedd.errors import InvalidInput

MAX_EXPRESSION_LENGTH = 256
# The last year fire times are computed for: the DST code needs the year after it.
MAX_YEAR = 9998

MACROS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# Longest month lengths; February 29 exists (in leap years), February 30 never does.
_MAX_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i
    wildcard_q: bool = False  # accepts ``?``


_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31, wildcard_q=True),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 7, _WEEKDAYS, wildcard_q=True),
)

_ITEM = re.compile(
    r"(?P<start>\*|\?|[0-9]{1,4}|[A-Za-z]{3})(?:-(?P<end>[0-9]{1,4}|[A-Za-z]{3}))?"
    r"(?:/(?P<step>[0-9]{1,4}))?"
)


class CronError(InvalidInput):
    """A cron expression or time zone is invalid; the message names the bad field."""

    def __init__(self, message: str, *, field: str | None = "schedule") -> None:
        super().__init__(message, field=field)


def quote(text: str) -> str:
    """``'text'`` for messages, with control characters escaped so a message is one line."""
    return f"'{text}'" if text.isprintable() else repr(text)


class _FieldError(Exception):
    """Internal: a problem with one item, worded without the field's name."""

    def __init__(self, item: str, problem: str) -> None:
        super().__init__(problem)
        self.item = item
        self.problem = problem


@dataclass(frozen=True, slots=True)
class CronSpec:
    """A parsed expression: each field expanded and sorted; weekdays 0-6 with 0 = Sunday.

    ``day_or``: both day-of-month and day-of-week are restricted, so a day matches if
    either matches (Vixie cron). ``fixed_hour``: the hour field has no ``*`` and no step,
    so DST gap/fold rules for fixed times apply (see :mod:`schedd.cron`).
    """

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: frozenset[int]
    day_set: frozenset[int]
    day_or: bool
    dom_only: bool
    fixed_hour: bool

    def next_wall(self, wall: datetime) -> datetime | None:
        """The first matching wall time at or after naive ``wall`` (seconds precision).

        None when there is none up to year MAX_YEAR. Terminates fast: parse_fields rejects
        day/month combinations that can never match, so a match is at most 8 years away
        (February 29 across 2100).
        """
        day = wall.date()
        hour, minute, second = wall.hour, wall.minute, wall.second
        while True:
            found = self._next_date(day)
            if found is None:
                return None
            if found != day:
                hour = minute = second = 0
            hms = self._next_time(hour, minute, second)
            if hms is not None:
                return datetime(found.year, found.month, found.day, *hms)
            day, hour, minute, second = found + timedelta(days=1), 0, 0, 0

    def _next_time(self, hour: int, minute: int, second: int) -> tuple[int, int, int] | None:
        hours, minutes, seconds = self.hours, self.minutes, self.seconds
        i = bisect_left(hours, hour)
        if i == len(hours):
            return None
        if hours[i] == hour:
            j = bisect_left(minutes, minute)
            if j < len(minutes):
                if minutes[j] == minute:
                    k = bisect_left(seconds, second)
                    if k < len(seconds):
                        return hour, minute, seconds[k]
                    j += 1
                if j < len(minutes):
                    return hour, minutes[j], seconds[0]
            i += 1
            if i == len(hours):
                return None
        return hours[i], minutes[0], seconds[0]

    def _next_date(self, start: date) -> date | None:
        year, month, day = start.year, start.month, start.day
        if month in self.months and self._day_matches(start):
            return start  # the common case, without the month walk
        while year <= MAX_YEAR:
            for candidate in self.months[bisect_left(self.months, month) :]:
                if candidate != month:
                    day = 1
                found = self._day_in_month(year, candidate, day)
                if found is not None:
                    return date(year, candidate, found)
            year, month, day = year + 1, 1, 1
        return None

    def _day_matches(self, day: date) -> bool:
        dom_ok = day.day in self.day_set
        dow_ok = day.isoweekday() % 7 in self.weekdays
        return (dom_ok or dow_ok) if self.day_or else (dom_ok and dow_ok)

    def _day_in_month(self, year: int, month: int, first: int) -> int | None:
        last = calendar.monthrange(year, month)[1]
        if self.dom_only:
            i = bisect_left(self.days, first)
            return self.days[i] if i < len(self.days) and self.days[i] <= last else None
        weekday = date(year, month, first).isoweekday() % 7 if first <= last else 0
        for day in range(first, last + 1):
            dom_ok = day in self.day_set
            dow_ok = weekday in self.weekdays
            if (dom_ok or dow_ok) if self.day_or else (dom_ok and dow_ok):
                return day
            weekday = (weekday + 1) % 7
        return None


def parse_fields(expression: str) -> CronSpec:
    """Parse and expand ``expression``; raise :class:`CronError` naming the bad field."""
    if not isinstance(expression, str):
        raise CronError(f"cron expression must be a string, not {type(expression).__name__}")
    # Checked before any parsing so that a huge input costs nothing.
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CronError(
            f"cron expression is too long ({len(expression)} characters, "
            f"at most {MAX_EXPRESSION_LENGTH})"
        )
    text = expression.strip()
    if not text:
        raise CronError("cron expression is empty")
    prefix = f"cron expression {quote(expression)}: "
    if text.startswith("@"):
        macro = MACROS.get(text.lower())
        if macro is None:
            supported = ", ".join(MACROS)
            raise CronError(f"{prefix}unsupported macro {quote(text)} (supported: {supported})")
        text = macro
    parts = text.split()
    if len(parts) == 5:
        parts.insert(0, "0")
    elif len(parts) != 6:
        raise CronError(
            f"{prefix}has {len(parts)} fields, expected 5 (minute hour day-of-month month "
            f"day-of-week) or 6 (second minute hour day-of-month month day-of-week)"
        )
    values: list[frozenset[int]] = []
    for spec, part in zip(_FIELDS, parts, strict=True):
        try:
            values.append(_expand(spec, part))
        except _FieldError as exc:
            subject = "" if exc.item == part else f": {quote(exc.item)}"
            raise CronError(
                f"{prefix}{spec.name} field {quote(part)}{subject} {exc.problem}"
            ) from None
    seconds, minutes, hours, days, months, weekdays = values
    dom_full = len(days) == 31
    dow_full = len(weekdays) == 7
    day_or = not dom_full and not dow_full
    dom_only = dow_full
    if dom_only and min(days) > max(_MAX_DAYS[m] for m in months):
        raise CronError(
            f"{prefix}day-of-month field {quote(parts[3])} and month field {quote(parts[4])} "
            "never match a real date, so it would never fire"
        )
    return CronSpec(
        seconds=tuple(sorted(seconds)),
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=tuple(sorted(days)),
        months=tuple(sorted(months)),
        weekdays=weekdays,
        day_set=days,
        day_or=day_or,
        dom_only=dom_only,
        fixed_hour="*" not in parts[2] and "/" not in parts[2],
    )


# Fields repeat across expressions ("0", "*", "*/5"): thousands of distinct schedules
# (one per task, each at its own minute) expand a few hundred distinct fields. A field
# that raises is not cached (lru_cache keeps only returned values).
@functools.lru_cache(maxsize=2048)
def _expand(spec: _Field, text: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _FieldError(text, "has an empty list item")
        values.update(_expand_item(spec, item))
    if spec.name == "day-of-week" and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


def _expand_item(spec: _Field, item: str) -> range:
    match = _ITEM.fullmatch(item)
    if match is None:
        raise _FieldError(item, "is not a valid value")
    start, end, step = match.group("start", "end", "step")
    # The span ``*`` stands for; day-of-week 7 is a second Sunday, not an eighth day.
    high = 6 if spec.name == "day-of-week" else spec.high
    if start in ("*", "?"):
        if start == "?" and not spec.wildcard_q:
            raise _FieldError(item, "does not accept '?' (only day-of-month and day-of-week)")
        if end is not None or (start == "?" and step is not None):
            raise _FieldError(item, "is not a valid value")
        first, last = spec.low, high
    else:
        first = _value(spec, item, start)
        if step is not None and end is None and first > high:
            first = 0  # day-of-week "7/2": Sunday, then every second day
        last = first if step is None else high
        if end is not None:
            last = _value(spec, item, end)
            if spec.name == "day-of-week" and last == 0 and first > 0 and end.isalpha():
                last = 7
            if last < first:
                raise _FieldError(item, f"is a reversed range ({first} > {last})")
    stride = 1
    if step is not None:
        stride = int(step)
        span = high - spec.low + 1
        if not 1 <= stride <= span:
            raise _FieldError(item, f"has step {stride}, the step must be 1-{span}")
    return range(first, last + 1, stride)


def _value(spec: _Field, item: str, token: str) -> int:
    if token.isalpha():
        upper = token.upper()
        if upper not in spec.names:
            kind = {"month": "a month name", "day-of-week": "a weekday name"}.get(spec.name)
            what = f"is not a number or {kind}" if kind else "is not a number"
            raise _FieldError(item, what if item == token else f"has {quote(token)}, which {what}")
        return spec.low + spec.names.index(upper)
    number = int(token)
    if not spec.low <= number <= spec.high:
        where = "is" if item == token else f"has {number}, which is"
        raise _FieldError(item, f"{where} out of range {spec.low}-{spec.high}")
    return number
