"""When the next attempt is due: anchored at the first failure F, never drifting.

With the default schedule an attempt fails at F; retries are due at F+10m, F+1h, F+3h,
F+1d, then F+2d ... F+7d: 10 retries, 11 attempts in all. Waits longer than SQS's
15-minute delay hop: see ``delay_seconds`` and the task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime


def next_retry_at(
    first_failure: datetime, retries_made: int, offsets: Sequence[int], now: datetime | None = None
) -> datetime | None:
    """Due time of retry ``retries_made + 1``, or None when the schedule is exhausted: the
    offset of that retry, or, for an attempt made late (after a Retry-After, a backlog), the
    first offset still ahead of ``now``: late attempts skip the slots they missed rather than
    follow each other at once, and the last offset stays the horizon."""
    for offset in offsets[retries_made:]:
        due = first_failure + timedelta(seconds=offset)
        if now is None or due > now:
            return due
    return None


def honour_retry_after(due: datetime, asked: datetime, first_failure: datetime, offsets: Sequence[int]) -> datetime:
    """The due time once a subscriber's Retry-After (``asked``, already capped) is honoured:
    no earlier than it asks, no later than the schedule's horizon (its last offset)."""
    return min(max(due, asked), first_failure + timedelta(seconds=offsets[-1]))


def parse_retry_after(raw: str, now: datetime) -> datetime:
    """The time a ``Retry-After`` value (delay-seconds or HTTP-date, RFC 9110) asks for, naive
    UTC; ValueError naming the problem for a malformed or negative one."""
    value = raw.strip()
    if value.isdigit():
        try:
            return now + timedelta(seconds=int(value))
        except OverflowError:
            raise ValueError(f"Retry-After {raw[:40]!r} is beyond the calendar") from None
    if value.startswith("-") and value[1:].isdigit():
        raise ValueError(f"negative Retry-After {raw!r}")
    try:
        asked = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise ValueError(f"malformed Retry-After {raw!r}") from None
    if asked.tzinfo is None:
        raise ValueError(f"malformed Retry-After {raw!r} (an HTTP-date is in GMT)")
    try:
        return asked.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise ValueError(f"Retry-After {raw[:40]!r} is beyond the calendar") from None


def delay_seconds(due: datetime, now: datetime, max_delay: int) -> int:
    """Whole seconds SQS should hold the message: the rest of the wait, at most ``max_delay``."""
    remaining = (due - now).total_seconds()
    return max(0, min(max_delay, math.ceil(remaining)))


def is_early(due: datetime | None, now: datetime) -> bool:
    """True when a message arrived before its due time and must hop again."""
    return due is not None and now < due
