"""Which fire times are due: enumeration of a task's backlog, bounded for long outages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schedd import cron
from schedd.scheduler.fire import ENUMERATION_LIMIT, due_times

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
EVERY_SECOND = cron.parse("* * * * * *")


def seconds_before(*offsets: int) -> list[datetime]:
    return [NOW - timedelta(seconds=o) for o in offsets]


def test_nothing_is_due_before_next_run_at() -> None:
    later = NOW + timedelta(seconds=1)
    assert due_times(EVERY_SECOND, later, NOW, 100) == ([], 0, True, later)


def test_next_run_at_itself_is_due_at_that_instant() -> None:
    assert due_times(EVERY_SECOND, NOW, NOW, 100) == ([NOW], 0, True, NOW + timedelta(seconds=1))


def test_every_time_from_next_run_at_to_now_inclusive() -> None:
    due = due_times(EVERY_SECOND, NOW - timedelta(seconds=3), NOW, 100)
    assert due.times == seconds_before(3, 2, 1, 0)
    assert (due.older, due.exact) == (0, True)
    assert due.following == NOW + timedelta(seconds=1)


def test_keeps_only_the_most_recent_and_counts_the_rest() -> None:
    due = due_times(EVERY_SECOND, NOW - timedelta(seconds=9), NOW, 4)
    assert due.times == seconds_before(3, 2, 1, 0)
    assert (due.older, due.exact) == (6, True)


def test_a_fraction_of_a_second_after_a_fire_time_includes_it() -> None:
    now = NOW + timedelta(microseconds=999_999)
    due = due_times(EVERY_SECOND, NOW - timedelta(seconds=1), now, 10)
    assert due.times == seconds_before(1, 0)
    assert due.following == NOW + timedelta(seconds=1)


def test_a_week_long_backlog_is_bounded_and_ends_at_now() -> None:
    first = NOW - timedelta(days=7)
    due = due_times(EVERY_SECOND, first, NOW, 100)
    assert not due.exact
    assert due.older >= ENUMERATION_LIMIT  # a lower bound of the real backlog
    assert due.times == [NOW - timedelta(seconds=s) for s in reversed(range(100))]
    assert due.following == NOW + timedelta(seconds=1)


def test_a_sparse_schedule_in_a_time_zone() -> None:
    daily = cron.parse("0 0 9 * * *", "Europe/Berlin")
    first = datetime(2026, 2, 26, 8, 0, tzinfo=UTC)  # 09:00 in Berlin (CET)
    due = due_times(daily, first, NOW, 100)
    assert due.times == [datetime(2026, 2, day, 8, 0, tzinfo=UTC) for day in (26, 27, 28)] + [
        datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    ]
    assert (due.older, due.exact) == (0, True)
    assert due.following == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
