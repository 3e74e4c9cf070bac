"""The project's one clock: every time the project writes or compares (audit records, due
times, checkpoints, grace periods) is read here, as naive UTC, the form the tables store.

``CLOCK_SHIFT`` (0 in production) moves it: the test suite runs a second time at a date
400 days ahead (``make test-shifted``), so that a test that writes a fixed date where
another reads fails the day it is written, not the day the calendar passes it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import settings

_SHIFT = timedelta(seconds=settings.CLOCK_SHIFT)


def utcnow() -> datetime:
    """Now, naive UTC (shifted by ``CLOCK_SHIFT``)."""
    return datetime.now(UTC).replace(tzinfo=None) + _SHIFT


def wall_seconds(moment: datetime) -> int:
    """Whole Unix seconds of a moment of this clock (naive means UTC) by the wall clock: what the
    outside world is told (a ``webhook-timestamp``, checked by receivers against their own clocks),
    ``CLOCK_SHIFT`` taken off."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return int((aware - _SHIFT).timestamp())


def from_unix(seconds: float) -> datetime:
    """A Unix time read from another clock (SQS's ``SentTimestamp``) as this clock reads it: naive
    UTC, shifted by ``CLOCK_SHIFT`` like ``utcnow`` (so the two compare at any shift)."""
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None) + _SHIFT


def now() -> datetime:
    """Now, aware UTC (shifted by ``CLOCK_SHIFT``)."""
    return datetime.now(UTC) + _SHIFT
