"""Cron schedules: parse once, then compute fire times in a task's time zone, DST-safe.

Formats
    6 fields, seconds first: ``sec min hour day-of-month month day-of-week``
    (``0 */5 * * * *``, ``0 0 9 * * 1-5``); 5 fields: classic ``min hour dom month dow``,
    firing at second 0; macros ``@yearly @annually @monthly @weekly @daily @midnight
    @hourly``. Field grammar: :mod:`schedd.cronfields`. Everything else (``@reboot``, 7
    fields, out-of-range values, reversed ranges, step 0, junk, more than 256 characters,
    a day/month pair that never exists such as February 30) raises :class:`CronError`
    whose message names the bad field.

Day-of-month and day-of-week
    A field is *restricted* when it does not cover its whole range (``*``, ``?``,
    ``*/1``, ``1-31`` and ``0-6`` are unrestricted; ``*/2`` is restricted). When both are
    restricted a day matches if EITHER matches (Vixie cron: ``0 0 0 1 * MON`` fires on
    the 1st and on every Monday); otherwise the restricted one alone decides.

Time zones and DST
    Fire times are the wall times of the task's IANA zone that match the expression,
    mapped to UTC instants. The hour field decides how wall times that do not exist
    exactly once are treated:

    * Fixed hour (only numbers, ranges and lists, e.g. ``0 30 2 * * *``, ``0 0 9-17 * * *``):
      a matching wall time inside a spring-forward gap fires once at the first instant
      after the gap (Europe/Berlin 2025-03-30 02:30 fires at 03:00 CEST = 01:00 UTC); all
      matching times of one gap, and a match at the gap's end, collapse into that single
      fire. A matching wall time in a repeated fall-back period fires once, at its first
      occurrence (fold=0).
    * Wildcard or step in the hour (``0 0 * * * *``, ``0 */15 * * * *``,
      ``*/10 * * * * *``): the schedule follows real time. A wall time that does not
      exist is skipped; a repeated wall time fires at both of its instants. So whenever
      the DST shift is a multiple of the schedule's period (1 h shifts and any period
      dividing 60 min; Lord_Howe's 30 min shift and periods dividing 30 min), spacing
      in UTC stays constant across transitions. Otherwise the period cannot be kept:
      an hourly job in Australia/Lord_Howe fires 90 minutes apart across both of its
      transitions (its 02:00 does not exist in spring; in autumn 01:30-02:00 repeats
      but holds no ``:00``); we do not invent fires at times that are not on the schedule.
    * Pacific/Apia skipped 2011-12-30 entirely (a 24 h gap). The same rules apply: a
      daily midnight job fires on the 29th and then on the 31st (the 30th's run
      collapses with the 31st's 00:00); a daily noon job fires 29th 12:00, 31st 00:00
      (the 30th's run, right after the gap) and 31st 12:00; interval jobs skip the day.

Invariants: fire times are strictly increasing UTC instants with microsecond 0, never
duplicated, never at a non-existent wall time except the "right after the gap" fire.
Finding the next fire is bounded: a matching date is at most 8 years away (February 29
across 2100) and each DST transition on the way costs one more step. Fire times exist
for years 2-9998; beyond, :meth:`Schedule.next_after` raises ValueError.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schedd.cronfields import MAX_YEAR, CronError, CronSpec, parse_fields, quote

__all__ = ["CronError", "Schedule", "parse", "validate", "zone"]

_DAY = 86_400
# Longest fall-back in tzdata is 23 h (Pacific/Kwajalein 1969); a fixed time that repeats
# can only lie that far after its transition.
_FOLD_WINDOW = 2 * _DAY
# previous_at_or_before looks back at most this far (longer than any gap between fires).
_LOOKBACK = 10 * 366 * _DAY
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = _EPOCH.replace(tzinfo=UTC)
_MIN_TS = int((datetime(2, 1, 1) - _EPOCH).total_seconds())
_MAX_TS = int((datetime(MAX_YEAR + 1, 1, 1) - _EPOCH).total_seconds()) - 1


class _OutOfRange(ValueError):
    """The answer would fall outside the years fire times are computed for."""


@functools.lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; CronError (field ``timezone``) if it is unknown."""
    if not isinstance(name, str) or not name or len(name) > 255:
        raise CronError(f"unknown time zone {quote(str(name)[:64])}", field="timezone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: not a normalized relative key; OSError: a directory, too long, ...
        raise CronError(f"unknown time zone {quote(name)}", field="timezone") from None


@functools.lru_cache(maxsize=16384)
def parse(expression: str, timezone: str = "UTC") -> Schedule:
    """The :class:`Schedule` for ``expression`` in ``timezone`` (cached: parse once).

    Raises CronError (field ``schedule``) for a bad expression and CronError (field
    ``timezone``) for an unknown zone.
    """
    return Schedule(expression, timezone)


def validate(expression: str) -> None:
    """Raise CronError if ``expression`` is not a valid cron expression."""
    parse(expression)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed cron expression bound to a time zone. Immutable and hashable.

    Build it with :func:`parse` (cached); the constructor parses too and raises
    CronError. All methods take aware datetimes in any zone and return aware UTC
    datetimes with microsecond 0; "after" means strictly after.
    """

    expression: str
    timezone: str = "UTC"
    _spec: CronSpec = field(init=False, repr=False, compare=False)
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_spec", parse_fields(self.expression))
        object.__setattr__(self, "_zone", zone(self.timezone))

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after ``after``.

        ValueError if ``after`` is naive or the answer is outside years 2-9998.
        """
        return _from_ts(self._next_ts(_to_utc_ts(after)))

    def iter_after(self, after: datetime) -> Iterator[datetime]:
        """Successive fire times after ``after``, strictly increasing (ends at year 9998)."""
        current = _to_utc_ts(after)
        while True:
            try:
                current = self._next_ts(current)
            except _OutOfRange:
                return
            yield _from_ts(current)

    def between(self, start: datetime, end: datetime, limit: int | None = None) -> list[datetime]:
        """Fire times t with ``start < t <= end``, in order, at most ``limit`` of them."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        last = _from_ts(_to_utc_ts(end))  # floored: a whole-second t <= end iff t <= last
        result: list[datetime] = []
        if limit == 0:
            return result
        for fire in self.iter_after(start):
            if fire > last:
                break
            result.append(fire)
            if len(result) == limit:
                break
        return result

    def previous_at_or_before(self, t: datetime) -> datetime | None:
        """The last fire time at or before ``t``; None if none in the 10 years before it.

        Found by an exponential then binary search over :meth:`next_after`, so it agrees
        with it exactly (O(log) next_after calls, no enumeration of fires).
        """
        end = _to_utc_ts(t)
        span = 1
        while True:  # widen until some fire lies in (end - span, end]
            low = end - span
            if span > _LOOKBACK or low < _MIN_TS:
                return None
            if self._next_or_never(low) <= end:
                break
            span *= 2
        high = end  # invariant: next(low) <= end < next(high)
        while high - low > 1:
            middle = (low + high) // 2
            if self._next_or_never(middle) <= end:
                low = middle
            else:
                high = middle
        return _from_ts(self._next_ts(low))

    def _next_or_never(self, after: int) -> int:
        try:
            return self._next_ts(after)
        except _OutOfRange:
            return _MAX_TS + _DAY

    def _next_ts(self, after: int) -> int:
        """The next fire instant (POSIX seconds) strictly after instant ``after``.

        Walks the zone's constant-offset segments: within one segment wall time = instant
        + offset is monotonic, so the first matching wall time gives the first instant;
        if a transition comes before that instant, restart at the transition.
        """
        spec, tz = self._spec, self._zone
        low = after + 1
        while True:
            if low < _MIN_TS or low > _MAX_TS:
                raise _OutOfRange(f"no fire time of {self.expression!r} in years 2-{MAX_YEAR}")
            offset = _offset(tz, low)
            start_wall = low + offset
            if spec.fixed_hour:
                previous = _last_transition(tz, low)
                if previous is not None:
                    instant, before = previous
                    if before < offset and instant == low:
                        # Right after a gap: fire here if any matching wall time was skipped.
                        skipped = spec.next_wall(_from_wall(instant + before))
                        if skipped is not None and _wall_ts(skipped) < instant + offset:
                            return instant
                    elif before > offset:
                        # Repeated wall times: their first occurrence was before `instant`.
                        start_wall = max(start_wall, instant + before)
            wall = spec.next_wall(_from_wall(start_wall))
            if wall is None:
                raise _OutOfRange(f"no fire time of {self.expression!r} in years 2-{MAX_YEAR}")
            candidate = _wall_ts(wall) - offset
            transition = _first_transition(tz, low, candidate)
            if transition is None:
                return candidate
            low = transition


def _to_utc_ts(moment: datetime) -> int:
    """POSIX seconds of an aware datetime, floored (a fire t > moment iff t > floor)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware, got naive {moment.isoformat()}")
    try:
        delta = moment.astimezone(UTC) - _EPOCH_UTC
    except OverflowError:
        raise ValueError(f"datetime {moment.isoformat()} is out of range") from None
    return delta.days * _DAY + delta.seconds


def _from_ts(ts: int) -> datetime:
    return _EPOCH_UTC + timedelta(seconds=ts)


def _from_wall(ts: int) -> datetime:
    """Naive wall datetime for 'wall seconds' (instant + offset)."""
    return _EPOCH + timedelta(seconds=ts)


def _wall_ts(wall: datetime) -> int:
    delta = wall - _EPOCH
    return delta.days * _DAY + delta.seconds


def _offset(tz: ZoneInfo, ts: int) -> int:
    """UTC offset in seconds in force at instant ``ts``."""
    offset = datetime.fromtimestamp(ts, tz).utcoffset()
    assert offset is not None  # ZoneInfo always has an offset
    return offset.days * _DAY + offset.seconds


def _days_before_year(year: int) -> int:
    previous = year - 1
    return previous * 365 + previous // 4 - previous // 100 + previous // 400


def _year_of(ts: int) -> int:
    """The UTC year of instant ``ts`` (integer arithmetic: this is on the hot path)."""
    ordinal = ts // _DAY + 719_163  # date(1970, 1, 1).toordinal()
    year = ordinal * 400 // 146_097 + 1
    while _days_before_year(year) >= ordinal:
        year -= 1
    while _days_before_year(year + 1) < ordinal:
        year += 1
    return year


@functools.lru_cache(maxsize=4096)
def _year_transitions(tz: ZoneInfo, year: int) -> tuple[tuple[int, int], ...]:
    """Offset changes in UTC year ``year``: (instant, offset before) with Jan 1 < instant
    <= next Jan 1. ``instant`` is the first second with the new offset.

    Found by sampling the offset daily and bisecting each change: tzdata has no two
    offset changes less than 2 days apart, so daily samples see every change.
    """
    if year < 2 or year > MAX_YEAR:
        return ()
    start = int((datetime(year, 1, 1) - _EPOCH).total_seconds())
    end = int((datetime(year + 1, 1, 1) - _EPOCH).total_seconds())
    found: list[tuple[int, int]] = []
    current, current_offset = start, _offset(tz, start)
    sample = start
    while sample < end:
        sample = min(sample + _DAY, end)
        sample_offset = _offset(tz, sample)
        while sample_offset != current_offset:
            low, high = current, sample  # offset(low) == current_offset != offset(high)
            while high - low > 1:
                middle = (low + high) // 2
                if _offset(tz, middle) == current_offset:
                    low = middle
                else:
                    high = middle
            found.append((high, current_offset))
            current, current_offset = high, _offset(tz, high)
        current = sample
    return tuple(found)


def _first_transition(tz: ZoneInfo, low: int, high: int) -> int | None:
    """The first offset change at an instant in (low, high], or None."""
    for year in range(_year_of(low), _year_of(high) + 1):
        for instant, _before in _year_transitions(tz, year):
            if low < instant <= high:
                return instant
    return None


def _last_transition(tz: ZoneInfo, ts: int) -> tuple[int, int] | None:
    """The last offset change (instant, offset before) in (ts - _FOLD_WINDOW, ts]."""
    last = None
    for year in range(_year_of(ts - _FOLD_WINDOW), _year_of(ts) + 1):
        for instant, before in _year_transitions(tz, year):
            if ts - _FOLD_WINDOW < instant <= ts:
                last = (instant, before)
    return last
