"""Fire times across DST transitions: explicit regression cases, including peers' bugs.

Rules under test (see the schedd.cron docstring):
- a fixed time (hour field without ``*`` or step) in a spring-forward gap fires once, at
  the first instant after the gap; all such times of one gap collapse into that fire;
- a fixed time in a repeated fall-back period fires once, at its first occurrence;
- a schedule with ``*`` or a step in the hour follows real time: non-existent wall times
  are skipped, repeated wall times fire at both instants.
Expected times are written as local ISO times with their UTC offset.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schedd import cron


def local_fires(expression: str, tz: str, after: datetime, count: int) -> list[str]:
    """The next ``count`` fire times after ``after``, as ISO local times with offset."""
    schedule = cron.parse(expression, tz)
    zone = cron.zone(tz)
    fires = schedule.between(after, after + timedelta(days=400), limit=count)
    return [fire.astimezone(zone).isoformat() for fire in fires]


def at(text: str, tz: str = "UTC", fold: int = 0) -> datetime:
    """``text`` (naive ISO) as a wall time in ``tz``."""
    return datetime.fromisoformat(text).replace(tzinfo=cron.zone(tz), fold=fold)


def utc_spacing(expression: str, tz: str, after: datetime, count: int) -> set[timedelta]:
    fires = cron.parse(expression, tz).between(after, after + timedelta(days=30), limit=count)
    return {later - earlier for earlier, later in zip(fires, fires[1:], strict=False)}


# --- Europe/Berlin: 2025-03-30 02:00 -> 03:00 (01:00Z); 2025-10-26 03:00 -> 02:00 (01:00Z)


def test_berlin_fixed_time_in_the_gap_fires_once_right_after_it() -> None:
    """02:30 does not exist on 2025-03-30: the job runs at 03:00 CEST (01:00Z), once."""
    assert local_fires("0 30 2 * * *", "Europe/Berlin", at("2025-03-28T12:00"), 3) == [
        "2025-03-29T02:30:00+01:00",
        "2025-03-30T03:00:00+02:00",
        "2025-03-31T02:30:00+02:00",
    ]


def test_berlin_several_fixed_times_in_one_gap_collapse_into_one_fire() -> None:
    """Four quarter-hour jobs in the missing hour run once, at 03:00, not four times."""
    assert local_fires("0 0,15,30,45 2 * * *", "Europe/Berlin", at("2025-03-29T12:00"), 3) == [
        "2025-03-30T03:00:00+02:00",
        "2025-03-31T02:00:00+02:00",
        "2025-03-31T02:15:00+02:00",
    ]


def test_berlin_gap_fire_and_a_fire_at_the_end_of_the_gap_are_one_fire() -> None:
    """02:00 (skipped, fires at 03:00) and 03:00 itself are the same instant: one fire."""
    assert local_fires("0 0 2,3 * * *", "Europe/Berlin", at("2025-03-29T12:00"), 3) == [
        "2025-03-30T03:00:00+02:00",
        "2025-03-31T02:00:00+02:00",
        "2025-03-31T03:00:00+02:00",
    ]


def test_berlin_fixed_time_in_the_repeated_hour_fires_once_at_the_first_occurrence() -> None:
    """02:30 happens twice on 2025-10-26; the job runs at 02:30 CEST only (cronie-style)."""
    assert local_fires("0 30 2 * * *", "Europe/Berlin", at("2025-10-25T12:00"), 2) == [
        "2025-10-26T02:30:00+02:00",
        "2025-10-27T02:30:00+01:00",
    ]


def test_berlin_fixed_time_asked_from_inside_the_second_occurrence() -> None:
    """From 02:10 CET (the second 02:10), the rest of the repeated hour is not re-run."""
    after = at("2025-10-26T02:10", "Europe/Berlin", fold=1)
    assert local_fires("0 */5 2 * * *", "Europe/Berlin", after, 1) == ["2025-10-27T02:00:00+01:00"]
    assert local_fires("0 30 2 * * *", "Europe/Berlin", after, 1) == ["2025-10-27T02:30:00+01:00"]


def test_kubernetes_121594_cronjob_at_2am_berlin_runs_once_on_fall_back() -> None:
    """k8s #121594: a 02:00 Europe/Berlin CronJob ran twice on 2023-10-29. It must run once."""
    assert local_fires("0 2 * * *", "Europe/Berlin", at("2023-10-28T12:00"), 2) == [
        "2023-10-29T02:00:00+02:00",
        "2023-10-30T02:00:00+01:00",
    ]


def test_berlin_fixed_hour_with_wildcard_minutes_uses_the_fixed_rules() -> None:
    """``0 * 2 * * *``: the hour is fixed. Fall back: 60 fires, all in the first 02:xx;
    spring forward: the whole skipped hour collapses into one fire at 03:00."""
    fall = cron.parse("0 * 2 * * *", "Europe/Berlin").between(
        at("2025-10-25T12:00"), at("2025-10-27T12:00")
    )
    berlin = cron.zone("Europe/Berlin")
    assert len(fall) == 60 + 60
    assert {f.astimezone(berlin).isoformat()[19:] for f in fall[:60]} == {"+02:00"}
    assert fall[60].astimezone(berlin).isoformat() == "2025-10-27T02:00:00+01:00"
    assert local_fires("0 * 2 * * *", "Europe/Berlin", at("2025-03-29T12:00"), 2) == [
        "2025-03-30T03:00:00+02:00",
        "2025-03-31T02:00:00+02:00",
    ]


def test_berlin_hourly_keeps_its_real_time_interval() -> None:
    """Hourly: no fire at the non-existent 02:00; both 02:00s in autumn; always 1 h in UTC."""
    assert local_fires("0 0 * * * *", "Europe/Berlin", at("2025-03-29T23:30", "UTC"), 3) == [
        "2025-03-30T01:00:00+01:00",
        "2025-03-30T03:00:00+02:00",
        "2025-03-30T04:00:00+02:00",
    ]
    assert local_fires("0 0 * * * *", "Europe/Berlin", at("2025-10-25T23:30", "UTC"), 3) == [
        "2025-10-26T02:00:00+02:00",
        "2025-10-26T02:00:00+01:00",
        "2025-10-26T03:00:00+01:00",
    ]


def test_berlin_every_ten_seconds_across_both_transitions() -> None:
    for start in ("2025-03-30T00:59:00", "2025-10-26T00:59:00"):
        assert utc_spacing("*/10 * * * * *", "Europe/Berlin", at(start), 30) == {
            timedelta(seconds=10)
        }


def test_croniter_91_vienna_half_past_every_hour_never_repeats() -> None:
    """croniter #91: ``30 * * * *`` in Europe/Vienna started returning the same instants
    after the 2017 transitions. Correct: strictly increasing, exactly 1 h apart in UTC,
    both 02:30s in autumn, no 02:30 in spring."""
    after = at("2017-10-29T00:05", "Europe/Vienna")
    assert local_fires("30 * * * *", "Europe/Vienna", after, 6) == [
        "2017-10-29T00:30:00+02:00",
        "2017-10-29T01:30:00+02:00",
        "2017-10-29T02:30:00+02:00",
        "2017-10-29T02:30:00+01:00",
        "2017-10-29T03:30:00+01:00",
        "2017-10-29T04:30:00+01:00",
    ]
    for start in (at("2017-10-28T10:09", "Europe/Vienna"), at("2017-03-25T20:05", "Europe/Vienna")):
        assert utc_spacing("30 * * * *", "Europe/Vienna", start, 40) == {timedelta(hours=1)}
    spring = local_fires("30 * * * *", "Europe/Vienna", at("2017-03-26T00:05", "Europe/Vienna"), 3)
    assert spring == [
        "2017-03-26T00:30:00+01:00",
        "2017-03-26T01:30:00+01:00",
        "2017-03-26T03:30:00+02:00",
    ]


def test_croniter_147_daily_job_keeps_its_wall_time_on_both_sides() -> None:
    """croniter #147 family (and its PR #92 example): a daily 16:00 US/Eastern job must
    stay at 16:00 local, i.e. move from 20:00Z to 21:00Z in November, back in March."""
    schedule = cron.parse("0 16 * * *", "America/New_York")
    november = schedule.between(at("2017-11-01T00:00"), at("2017-11-09T00:00"))
    assert [f.strftime("%d %H:%M") for f in november] == [
        "01 20:00",
        "02 20:00",
        "03 20:00",
        "04 20:00",
        "05 21:00",
        "06 21:00",
        "07 21:00",
        "08 21:00",
    ]
    march = schedule.between(at("2017-03-08T00:00"), at("2017-03-16T00:00"))
    assert [f.strftime("%d %H:%M") for f in march] == [
        "08 21:00",
        "09 21:00",
        "10 21:00",
        "11 21:00",
        "12 20:00",
        "13 20:00",
        "14 20:00",
        "15 20:00",
    ]


def test_cronie_218_weekly_job_is_not_skipped_across_spring_forward() -> None:
    """cronie #218: stepping 86400 s over the 23-hour day skipped Sunday 2022-03-27; the
    next run of a Sunday-noon job after Thursday 2022-03-24 is that Sunday."""
    after = at("2022-03-24T12:00", "Europe/Berlin")
    assert local_fires("0 12 * * 0", "Europe/Berlin", after, 2) == [
        "2022-03-27T12:00:00+02:00",
        "2022-04-03T12:00:00+02:00",
    ]


def test_cronie_repeated_hour_job_does_not_run_twice() -> None:
    """The cronie contract this mirrors: a job in the repeated hour is not re-run."""
    fires = cron.parse("0 15 2 * * *", "Europe/Berlin").between(
        at("2025-10-26T00:00", "Europe/Berlin"), at("2025-10-27T00:00", "Europe/Berlin")
    )
    assert fires == [at("2025-10-26T00:15")]


def test_cronie_217_skipping_to_a_month_with_another_dst_state() -> None:
    """cronie #217: from February (EST) to April (EDT) the first run was an hour late."""
    after = datetime.fromtimestamp(1423976400, UTC)  # 2015-02-15, New York
    assert local_fires("* * * */3 *", "America/New_York", after, 1) == ["2015-04-01T00:00:00-04:00"]


# --- America/New_York: 2025-03-09 02:00 -> 03:00 (07:00Z); 2025-11-02 02:00 -> 01:00 (06:00Z)


def test_new_york_fixed_time_in_the_gap_and_in_the_repeated_hour() -> None:
    assert local_fires("0 30 2 * * *", "America/New_York", at("2025-03-08T12:00"), 2) == [
        "2025-03-09T03:00:00-04:00",
        "2025-03-10T02:30:00-04:00",
    ]
    assert local_fires("0 30 1 * * *", "America/New_York", at("2025-11-01T12:00"), 2) == [
        "2025-11-02T01:30:00-04:00",
        "2025-11-03T01:30:00-05:00",
    ]


def test_apscheduler_1059_next_after_a_non_existent_start_is_the_next_day() -> None:
    """APScheduler #1059: CronTrigger(hour=2) from the non-existent 2013-03-10 02:00
    US/Eastern returned that non-existent time. The start (read with fold=0) is 03:00
    EDT, which is this day's fire; the next one is 2013-03-11 02:00 EDT."""
    after = at("2013-03-10T02:00", "America/New_York")
    assert local_fires("0 0 2 * * *", "America/New_York", after, 1) == ["2013-03-11T02:00:00-04:00"]
    assert local_fires("0 0 2 * * *", "America/New_York", at("2013-03-09T12:00"), 2) == [
        "2013-03-10T03:00:00-04:00",
        "2013-03-11T02:00:00-04:00",
    ]


def test_apscheduler_606_midnight_job_does_not_skip_the_day_after_spring_forward() -> None:
    """APScheduler #606: after 2022-03-13 00:00 PST the next midnight run was computed as
    the 15th, skipping the 14th."""
    after = at("2022-03-13T00:00:07", "America/Los_Angeles")
    assert local_fires("0 0 * * *", "America/Los_Angeles", after, 2) == [
        "2022-03-14T00:00:00-07:00",
        "2022-03-15T00:00:00-07:00",
    ]


def test_apscheduler_1021_next_fire_advances_inside_the_repeated_hour() -> None:
    """APScheduler #1021: minute=30 in Europe/Helsinki from 03:45 (second occurrence) kept
    returning 03:30 (fold=1), an infinite loop. The next fire is 04:30 EET."""
    after = at("2017-10-29T03:45", "Europe/Helsinki", fold=1)
    assert local_fires("0 30 * * * *", "Europe/Helsinki", after, 2) == [
        "2017-10-29T04:30:00+02:00",
        "2017-10-29T05:30:00+02:00",
    ]
    # From the first 03:45, the second 03:30 is still ahead (an hourly job runs in both).
    first = at("2017-10-29T03:45", "Europe/Helsinki", fold=0)
    assert local_fires("0 30 * * * *", "Europe/Helsinki", first, 2) == [
        "2017-10-29T03:30:00+02:00",
        "2017-10-29T04:30:00+02:00",
    ]


def test_antarctica_troll_two_hour_gap() -> None:
    """Troll jumps 01:00 -> 03:00; a 01:30 job runs at 03:00 (shift wider than an hour)."""
    assert local_fires("30 1 * * *", "Antarctica/Troll", at("2026-03-28T12:00"), 2) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T01:30:00+02:00",
    ]


# --- Australia/Lord_Howe: 30-minute shift. 2025-04-06 02:00+11 -> 01:30+10:30 (15:00Z);
# 2025-10-05 02:00+10:30 -> 02:30+11 (15:30Z).


def test_lord_howe_fixed_time_in_the_half_hour_gap() -> None:
    assert local_fires("0 15 2 * * *", "Australia/Lord_Howe", at("2025-10-03T12:00"), 3) == [
        "2025-10-04T02:15:00+10:30",
        "2025-10-05T02:30:00+11:00",
        "2025-10-06T02:15:00+11:00",
    ]


def test_lord_howe_fixed_time_in_the_repeated_half_hour_fires_once() -> None:
    assert local_fires("0 45 1 * * *", "Australia/Lord_Howe", at("2025-04-05T00:00"), 2) == [
        "2025-04-06T01:45:00+11:00",
        "2025-04-07T01:45:00+10:30",
    ]


def test_lord_howe_quarter_hours_keep_constant_real_time_spacing() -> None:
    """15 min divides the 30 min shift: both 01:30 and 01:45 repeat, spacing stays 15 min."""
    assert local_fires("0 */15 * * * *", "Australia/Lord_Howe", at("2025-04-05T14:20"), 5) == [
        "2025-04-06T01:30:00+11:00",
        "2025-04-06T01:45:00+11:00",
        "2025-04-06T01:30:00+10:30",
        "2025-04-06T01:45:00+10:30",
        "2025-04-06T02:00:00+10:30",
    ]
    for start in ("2025-04-05T12:00", "2025-10-04T13:00"):
        assert utc_spacing("0 */15 * * * *", "Australia/Lord_Howe", at(start), 40) == {
            timedelta(minutes=15)
        }


def test_lord_howe_hourly_cannot_keep_an_hour_and_is_90_minutes_apart_once() -> None:
    """Local :00 moves by 30 min against real time at each transition. We fire only at
    wall times on the schedule, so the spacing is 90 min once per transition."""
    assert local_fires("0 0 * * * *", "Australia/Lord_Howe", at("2025-04-05T13:30"), 3) == [
        "2025-04-06T01:00:00+11:00",
        "2025-04-06T02:00:00+10:30",
        "2025-04-06T03:00:00+10:30",
    ]
    assert local_fires("0 0 * * * *", "Australia/Lord_Howe", at("2025-10-04T14:00"), 3) == [
        "2025-10-05T01:00:00+10:30",
        "2025-10-05T03:00:00+11:00",
        "2025-10-05T04:00:00+11:00",
    ]


def test_croniter_258_lord_howe_previous_and_next_agree() -> None:
    """croniter #258: get_next skipped 02:30+11:00 but get_prev returned it. For us 02:30
    is not on ``0 * * * *`` at all, and previous/next are consistent."""
    schedule = cron.parse("0 * * * *", "Australia/Lord_Howe")
    start = at("2019-10-06T01:43", "Australia/Lord_Howe")
    following = schedule.next_after(start)
    assert following == at("2019-10-06T03:00", "Australia/Lord_Howe")
    before = schedule.previous_at_or_before(following - timedelta(seconds=1))
    assert before == at("2019-10-06T01:00", "Australia/Lord_Howe")
    assert before is not None and before < start


# --- America/Santiago: transitions at midnight. 2024-04-07 00:00-03 -> 2024-04-06 23:00-04
# (03:00Z); 2024-09-08 00:00-04 -> 01:00-03 (04:00Z).


def test_santiago_midnight_job_on_the_spring_forward_day_fires_once_after_the_gap() -> None:
    """Midnight does not exist on 2024-09-08: the daily job runs at 01:00, once."""
    for expression in ("0 0 0 * * *", "@daily", "0 0 * * *"):
        assert local_fires(expression, "America/Santiago", at("2024-09-06T12:00"), 3) == [
            "2024-09-07T00:00:00-04:00",
            "2024-09-08T01:00:00-03:00",
            "2024-09-09T00:00:00-03:00",
        ]


def test_santiago_fall_back_at_midnight() -> None:
    """23:00-23:59 of 2024-04-06 happens twice: 23:30 runs once (first); midnight once."""
    assert local_fires("0 30 23 * * *", "America/Santiago", at("2024-04-05T12:00"), 3) == [
        "2024-04-05T23:30:00-03:00",
        "2024-04-06T23:30:00-03:00",
        "2024-04-07T23:30:00-04:00",
    ]
    assert local_fires("0 0 0 * * *", "America/Santiago", at("2024-04-05T12:00"), 3) == [
        "2024-04-06T00:00:00-03:00",
        "2024-04-07T00:00:00-04:00",
        "2024-04-08T00:00:00-04:00",
    ]
    assert local_fires("0 0 * * * *", "America/Santiago", at("2024-04-07T01:30"), 3) == [
        "2024-04-06T23:00:00-03:00",
        "2024-04-06T23:00:00-04:00",
        "2024-04-07T00:00:00-04:00",
    ]


# --- Pacific/Apia: 2011-12-29 23:59:59-10:00 is followed by 2011-12-31 00:00:00+14:00.


def test_apia_daily_midnight_job_fires_on_the_29th_then_the_31st() -> None:
    assert local_fires("0 0 0 * * *", "Pacific/Apia", at("2011-12-28T12:00"), 3) == [
        "2011-12-29T00:00:00-10:00",
        "2011-12-31T00:00:00+14:00",
        "2012-01-01T00:00:00+14:00",
    ]


def test_apia_daily_noon_job_runs_the_skipped_days_run_right_after_the_gap() -> None:
    """The 30th's 12:00 never exists: like any fixed time in a gap it fires once, at the
    first instant after the gap (31st 00:00), then the 31st's own 12:00 follows."""
    assert local_fires("0 0 12 * * *", "Pacific/Apia", at("2011-12-29T00:00"), 3) == [
        "2011-12-29T12:00:00-10:00",
        "2011-12-31T00:00:00+14:00",
        "2011-12-31T12:00:00+14:00",
    ]


def test_apia_weekly_friday_job_on_the_missing_friday() -> None:
    """Friday 2011-12-30 does not exist; its 09:00 run happens right after the gap."""
    assert local_fires("0 0 9 * * FRI", "Pacific/Apia", at("2011-12-20T00:00"), 3) == [
        "2011-12-23T09:00:00-10:00",
        "2011-12-31T00:00:00+14:00",
        "2012-01-06T09:00:00+14:00",
    ]


def test_apia_hourly_job_skips_the_day_and_keeps_one_hour_in_real_time() -> None:
    assert local_fires("0 0 * * * *", "Pacific/Apia", at("2011-12-30T07:30"), 3) == [
        "2011-12-29T22:00:00-10:00",
        "2011-12-29T23:00:00-10:00",
        "2011-12-31T00:00:00+14:00",
    ]
    assert utc_spacing("0 */15 * * * *", "Pacific/Apia", at("2011-12-30T06:00"), 40) == {
        timedelta(minutes=15)
    }
