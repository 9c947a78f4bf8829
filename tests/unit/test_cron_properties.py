"""Property tests for fire times in five DST-heavy zones, against brute-force oracles.

The oracles here are deliberately naive and independent of schedd.cron: they walk every
minute (of UTC, or of local wall time) and use only datetime/zoneinfo conversions.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import example, given, settings
from hypothesis import strategies as st

from schedd import cron

ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Pacific/Apia",
]
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)

zones = st.sampled_from(ZONES)
years = st.integers(min_value=2008, max_value=2030)

# Field texts with their meaning; seconds fixed at 0 so that the oracles can walk minutes.
MINUTES = ["0", "30", "15,45", "*/15", "*/10", "5-20/5", "*", "59", "0-5"]
FIXED_HOURS = ["0", "1", "2", "3", "23", "1-3", "0,12", "2,3", "1,2"]
INTERVAL_HOURS = ["*", "*/2", "*/3", "1-23/2", "*/6"]
WEEKDAYS = ["*", "*", "MON-FRI", "SUN", "0,3"]


def expand(text: str, low: int, high: int, names: tuple[str, ...] = ()) -> set[int]:
    """A tiny independent expander for the field texts above."""
    values: set[int] = set()
    for item in text.split(","):
        for index, name in enumerate(names):
            item = item.replace(name, str(index))
        body, _, step = item.partition("/")
        if body == "*":
            first, last = low, high
        elif "-" in body:
            first, last = (int(part) for part in body.split("-"))
        else:
            first = last = int(body)
        values.update(range(first, last + 1, int(step or 1)))
    return values


class Oracle:
    def __init__(self, minute: str, hour: str, weekday: str, tz: str) -> None:
        self.minutes = expand(minute, 0, 59)
        self.hours = expand(hour, 0, 23)
        self.weekdays = expand(weekday, 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))
        self.fixed = "*" not in hour and "/" not in hour
        self.zone = ZoneInfo(tz)
        self.expression = f"0 {minute} {hour} * * {weekday}"

    def matches(self, wall: datetime) -> bool:
        return (
            wall.second == 0
            and wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.isoweekday() % 7 in self.weekdays
        )

    def wall(self, instant: datetime) -> datetime:
        return instant.astimezone(self.zone).replace(tzinfo=None)

    def fires(self, start: datetime, end: datetime) -> list[datetime]:
        """All fire instants in (start, end], by brute force."""
        found: set[datetime] = set()
        if not self.fixed:
            # Real-time schedules: every instant whose wall time matches.
            instant = start.replace(second=0) + MINUTE
            while instant <= end:
                if self.matches(self.wall(instant)):
                    found.add(instant)
                instant += MINUTE
        else:
            wall = self.wall(start).replace(second=0) - timedelta(hours=26)
            last = self.wall(end) + timedelta(hours=26)
            while wall <= last:
                if self.matches(wall):
                    found.add(self.fixed_instant(wall))
                wall += MINUTE
        return sorted(f for f in found if start < f <= end)

    def fixed_instant(self, wall: datetime) -> datetime:
        """First occurrence of an existing wall time; else the first instant after its gap."""
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        if self.wall(first) == wall:
            return first
        instant = min(first, wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC))
        while self.wall(instant) < wall:
            instant += MINUTE
        return instant


def after_spring_forward(instant: datetime, zone: ZoneInfo) -> bool:
    """``instant`` is the first second after a clock jump forward (a gap's end)."""
    now, before = (
        instant.astimezone(zone).utcoffset(),
        (instant - SECOND).astimezone(zone).utcoffset(),
    )
    assert now is not None and before is not None
    return now > before


@functools.cache
def transitions(tz: str, year: int) -> tuple[datetime, ...]:
    """UTC instants (whole minutes) where the zone's offset changes during ``year``."""
    zone = ZoneInfo(tz)
    found = []
    instant = datetime(year, 1, 1, tzinfo=UTC)
    step = timedelta(hours=6)
    while instant.year == year:
        if instant.astimezone(zone).utcoffset() != (instant + step).astimezone(zone).utcoffset():
            probe = instant
            before = probe.astimezone(zone).utcoffset()
            while probe.astimezone(zone).utcoffset() == before:
                probe += MINUTE
            found.append(probe)
        instant += step
    return tuple(found)


def window_near_transition(tz: str, year: int, pick: int, lead_minutes: int) -> datetime:
    """An instant ``lead_minutes`` before one of the year's transitions (if any)."""
    candidates = transitions(tz, year) or (datetime(year, 6, 1, tzinfo=UTC),)
    return candidates[pick % len(candidates)] - timedelta(minutes=lead_minutes)


@settings(max_examples=150, deadline=None)
@given(
    tz=zones,
    year=years,
    pick=st.integers(0, 5),
    # Negative: start just after the transition, e.g. inside a repeated period.
    lead=st.one_of(st.integers(-90, 0), st.integers(0, 26 * 60)),
    minute=st.sampled_from(MINUTES),
    hour=st.sampled_from(FIXED_HOURS + INTERVAL_HOURS),
    weekday=st.sampled_from(WEEKDAYS),
)
@example(tz="Pacific/Apia", year=2011, pick=2, lead=20 * 60, minute="0", hour="12", weekday="*")
@example(tz="Pacific/Apia", year=2011, pick=2, lead=20 * 60, minute="*/15", hour="*", weekday="*")
@example(tz="America/Santiago", year=2024, pick=1, lead=90, minute="0", hour="0", weekday="*")
@example(tz="Australia/Lord_Howe", year=2025, pick=0, lead=90, minute="*", hour="1", weekday="*")
@example(tz="Europe/Berlin", year=2025, pick=1, lead=-10, minute="*/15", hour="2", weekday="*")
def test_fire_times_equal_the_brute_force_oracle_around_transitions(
    tz: str, year: int, pick: int, lead: int, minute: str, hour: str, weekday: str
) -> None:
    """No fire missed, none extra, none duplicated, gap and fold rules exactly as documented."""
    oracle = Oracle(minute, hour, weekday, tz)
    start = window_near_transition(tz, year, pick, lead)
    end = start + timedelta(hours=30)
    schedule = cron.parse(oracle.expression, tz)
    assert schedule.between(start, end) == oracle.fires(start, end)


@settings(max_examples=150, deadline=None)
@given(
    tz=zones,
    start=st.datetimes(datetime(1990, 1, 1), datetime(2037, 12, 31), timezones=st.just(UTC)),
    second=st.sampled_from(["0", "*/20", "7,37", "*"]),
    minute=st.sampled_from(MINUTES),
    hour=st.sampled_from(FIXED_HOURS + INTERVAL_HOURS),
    day=st.sampled_from(["*", "1", "1-7", "*/10", "29"]),
    month=st.sampled_from(["*", "3", "MAR,OCT", "4/6"]),
    weekday=st.sampled_from(WEEKDAYS),
)
def test_fires_increase_strictly_and_only_at_matching_or_gap_end_times(
    tz: str,
    start: datetime,
    second: str,
    minute: str,
    hour: str,
    day: str,
    month: str,
    weekday: str,
) -> None:
    expression = f"{second} {minute} {hour} {day} {month} {weekday}"
    schedule = cron.parse(expression, tz)
    zone = ZoneInfo(tz)
    fixed = "*" not in hour and "/" not in hour
    seconds, minutes, hours = expand(second, 0, 59), expand(minute, 0, 59), expand(hour, 0, 23)
    iterator = schedule.iter_after(start)
    previous = start
    for _ in range(30):
        fire = next(iterator)
        assert fire > previous
        assert fire.tzinfo is UTC and fire.microsecond == 0
        local = fire.astimezone(zone)
        on_schedule = local.second in seconds and local.minute in minutes and local.hour in hours
        if not on_schedule:
            # Only the "right after the gap" fire of a fixed-time schedule is off-schedule.
            assert fixed, f"{expression}: {local.isoformat()} is not on the schedule"
            assert after_spring_forward(fire, zone)
        if fixed:
            # A fixed time never fires in the second occurrence of a repeated period.
            assert local.replace(fold=0).astimezone(UTC) == fire
        previous = fire
    following = schedule.next_after(previous)
    assert schedule.previous_at_or_before(following) == following
    assert schedule.previous_at_or_before(following - SECOND) == previous


def skipped_dates(zone: ZoneInfo, year: int) -> set[date]:
    """Local dates that never happen (Pacific/Apia 2011-12-30): none of their hours exist."""

    def exists(wall: datetime) -> bool:
        instant = wall.replace(tzinfo=zone).astimezone(UTC)
        return instant.astimezone(zone).replace(tzinfo=None) == wall

    skipped = set()
    day = date(year, 1, 1)
    while day.year == year:
        midnight = datetime.combine(day, datetime.min.time())
        if not any(exists(midnight + timedelta(hours=h)) for h in (0, 6, 12, 18, 23)):
            skipped.add(day)
        day += timedelta(days=1)
    return skipped


@settings(max_examples=60, deadline=None)
@given(
    tz=zones,
    year=years,
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 1, 15, 30, 45, 59]),
    second=st.sampled_from([0, 30, 59]),
)
@example(tz="Pacific/Apia", year=2011, hour=12, minute=0, second=0)
@example(tz="Pacific/Apia", year=2011, hour=0, minute=0, second=0)
@example(tz="America/Santiago", year=2024, hour=0, minute=30, second=0)
@example(tz="Australia/Lord_Howe", year=2025, hour=2, minute=15, second=0)
@example(tz="Europe/Berlin", year=2025, hour=2, minute=30, second=0)
def test_fixed_daily_time_fires_once_per_local_date_for_a_year(
    tz: str, year: int, hour: int, minute: int, second: int
) -> None:
    zone = ZoneInfo(tz)
    schedule = cron.parse(f"{second} {minute} {hour} * * *", tz)
    start = datetime(year, 1, 1, tzinfo=zone).astimezone(UTC) - SECOND
    end = datetime(year + 1, 1, 1, tzinfo=zone).astimezone(UTC) - SECOND
    per_date: dict[date, int] = {}
    for fire in schedule.between(start, end):
        local = fire.astimezone(zone)
        if (local.hour, local.minute, local.second) != (hour, minute, second):
            # Off-schedule only right after a gap (the run of a skipped wall time).
            assert after_spring_forward(fire, zone)
        per_date[local.date()] = per_date.get(local.date(), 0) + 1
    skipped = skipped_dates(zone, year)
    day = date(year, 1, 1)
    while day.year == year:
        expected = 0 if day in skipped else 1
        # The day after a skipped date also runs the skipped date's job, right after the
        # gap, unless that is the same instant as its own run (a midnight job).
        if day - timedelta(days=1) in skipped and (hour, minute, second) != (0, 0, 0):
            expected += 1
        assert per_date.get(day, 0) == expected, f"{tz} {day}"
        day += timedelta(days=1)


DIVISORS_OF_60 = [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30]


@settings(max_examples=120, deadline=None)
@given(
    tz=zones,
    year=years,
    pick=st.integers(0, 5),
    lead=st.integers(0, 6 * 60),
    step=st.sampled_from([*DIVISORS_OF_60, 60]),
)
@example(tz="Australia/Lord_Howe", year=2025, pick=0, lead=120, step=60)
@example(tz="Australia/Lord_Howe", year=2025, pick=1, lead=120, step=20)
@example(tz="Pacific/Apia", year=2011, pick=2, lead=120, step=60)
def test_interval_schedules_keep_real_time_spacing_across_transitions(
    tz: str, year: int, pick: int, lead: int, step: int
) -> None:
    """``0 */N * * * *`` (N | 60) and hourly: constant UTC spacing through any transition
    whose shift is a multiple of N minutes, which is every shift here except Lord_Howe's
    30 minutes when N does not divide 30. There the spacing changes once per transition,
    and only by less than 30 minutes."""
    expression = "0 0 * * * *" if step == 60 else f"0 */{step} * * * *"
    start = window_near_transition(tz, year, pick, lead)
    fires = cron.parse(expression, tz).between(start, start + timedelta(hours=12))
    gaps = [later - earlier for earlier, later in zip(fires, fires[1:], strict=False)]
    interval = timedelta(minutes=step)
    if tz == "Australia/Lord_Howe" and 30 % step != 0:
        odd = [gap for gap in gaps if gap != interval]
        assert len(odd) <= 1
        assert all(abs(gap - interval) <= timedelta(minutes=30) for gap in odd)
    else:
        assert set(gaps) == {interval}


@settings(max_examples=60, deadline=None)
@given(
    tz=zones,
    year=years,
    pick=st.integers(0, 5),
    step=st.sampled_from([1, 5, 10, 15, 20, 30]),
)
def test_second_steps_keep_constant_spacing_through_transitions(
    tz: str, year: int, pick: int, step: int
) -> None:
    start = window_near_transition(tz, year, pick, 2)
    fires = cron.parse(f"*/{step} * * * * *", tz).between(start, start + timedelta(minutes=5))
    gaps = {later - earlier for earlier, later in zip(fires, fires[1:], strict=False)}
    assert gaps == {timedelta(seconds=step)}
