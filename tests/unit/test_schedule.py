"""The retry schedule's arithmetic at full scale."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

import settings
from tasks import schedule
from webhooks.errors import ConfigurationError

DEFAULT = settings.parse_schedule("10m,1h,3h,1d,2d,3d,4d,5d,6d,7d")
F = datetime(2026, 1, 1, 12, 0, 0)


def test_the_default_schedule_retries_at_the_seeds_offsets_from_the_first_failure() -> None:
    due = [schedule.next_retry_at(F, made, DEFAULT) for made in range(10)]
    assert [moment - F for moment in due if moment] == [
        timedelta(minutes=10),
        timedelta(hours=1),
        timedelta(hours=3),
        *[timedelta(days=day) for day in range(1, 8)],
    ]


def test_retry_4_is_due_one_day_after_the_first_failure_and_the_last_seven_days_after() -> None:
    assert schedule.next_retry_at(F, 3, DEFAULT) == F + timedelta(days=1)
    assert schedule.next_retry_at(F, 9, DEFAULT) == F + timedelta(days=7)


def test_there_are_eleven_attempts_in_all() -> None:
    retries = 0
    while schedule.next_retry_at(F, retries, DEFAULT) is not None:
        retries += 1
    assert retries == 10
    assert 1 + retries == 11


def test_delays_are_computed_from_the_due_time_so_they_never_drift() -> None:
    due = schedule.next_retry_at(F, 1, DEFAULT)
    assert due is not None
    late_start = F + timedelta(minutes=10, seconds=37)  # the previous retry ran late
    assert schedule.delay_seconds(due, late_start, 10**9) == 3600 - 600 - 37


def test_a_wait_longer_than_sqs_allows_is_cut_into_hops_of_at_most_the_maximum() -> None:
    due = F + timedelta(hours=1)
    assert schedule.delay_seconds(due, F, 900) == 900
    assert schedule.delay_seconds(due, due - timedelta(seconds=12.2), 900) == 13
    assert schedule.delay_seconds(due, due + timedelta(seconds=5), 900) == 0


def test_early_means_before_the_due_time() -> None:
    assert schedule.is_early(F, F - timedelta(milliseconds=1))
    assert not schedule.is_early(F, F)
    assert not schedule.is_early(None, F)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("10m,5m", "strictly increasing"),
        ("0s", "positive"),
        ("10 minutes", "is not an offset"),
        ("", "is not an offset"),
        ("1h,,2h", "is not an offset"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_setting(raw: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as refused:
        settings.parse_schedule(raw)
    assert "WEBHOOK_RETRY_SCHEDULE" in str(refused.value)


def test_units_are_seconds_minutes_hours_and_days() -> None:
    assert settings.parse_schedule("30s, 2m,1h,1d") == (30, 120, 3600, 86400)


def test_a_late_attempt_skips_the_slots_it_missed_and_the_last_offset_stays_the_horizon() -> None:
    offsets = (600, 3600, 10800)
    assert schedule.next_retry_at(F, 0, offsets, F) == F + timedelta(seconds=600)
    late = F + timedelta(minutes=70)  # retry 1 made 70 min after F: the 1 h slot is gone
    assert schedule.next_retry_at(F, 1, offsets, late) == F + timedelta(seconds=10800)
    assert schedule.next_retry_at(F, 1, offsets, F + timedelta(hours=4)) is None  # past the horizon


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("120", 120), ("0", 0), (" 7 ", 7), ("Thu, 01 Jan 2026 12:05:00 GMT", 300)],
)
def test_a_retry_after_in_seconds_or_as_an_http_date_gives_the_time_asked(raw: str, seconds: int) -> None:
    assert schedule.parse_retry_after(raw, F) == F + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("raw", "problem"), [("-5", "negative"), ("soon", "malformed"), ("1.5", "malformed"), ("", "malformed")]
)
def test_a_malformed_or_negative_retry_after_is_refused_naming_it(raw: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        schedule.parse_retry_after(raw, F)


def test_a_retry_after_is_honoured_no_earlier_than_asked_and_no_later_than_the_horizon() -> None:
    offsets = (600, 3600)
    due = F + timedelta(seconds=600)
    assert schedule.honour_retry_after(due, F + timedelta(seconds=60), F, offsets) == due  # earlier: the schedule's
    assert schedule.honour_retry_after(due, F + timedelta(seconds=900), F, offsets) == F + timedelta(seconds=900)
    assert schedule.honour_retry_after(due, F + timedelta(days=2), F, offsets) == F + timedelta(seconds=3600)
