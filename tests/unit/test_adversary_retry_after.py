"""Adversary review: a hostile subscriber's Retry-After values that the parser must refuse or
cap, never raise on (a raise after the POST leaves the attempt unrecorded)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tasks import schedule
from webhooks.clock import utcnow


@pytest.mark.parametrize(
    "value",
    [
        "1000000000000",  # 31,000 years: datetime out of range
        "99999999999999999999",  # beyond timedelta's range
        "Fri, 31 Dec 9999 23:59:59 -1200",  # a valid HTTP-date that overflows once in UTC
    ],
)
def test_a_retry_after_beyond_the_calendar_is_refused_as_malformed_never_raised_otherwise(value: str) -> None:
    now = utcnow()
    try:
        asked = schedule.parse_retry_after(value, now)
    except ValueError:
        return  # refused: the attempt records "Retry-After ignored"
    assert asked > now + timedelta(days=1)  # or a time the caller caps
