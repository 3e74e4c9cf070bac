"""When the next attempt is due: anchored at the first failure F, never drifting.

With the default schedule an attempt fails at F; retries are due at F+10m, F+1h, F+3h,
F+1d, then F+2d ... F+7d: 10 retries, 11 attempts in all. Waits longer than SQS's
15-minute delay hop: see ``delay_seconds`` and the task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta


def next_retry_at(first_failure: datetime, retries_made: int, offsets: Sequence[int]) -> datetime | None:
    """Due time of retry ``retries_made + 1``, or None when the schedule is exhausted."""
    if retries_made >= len(offsets):
        return None
    return first_failure + timedelta(seconds=offsets[retries_made])


def delay_seconds(due: datetime, now: datetime, max_delay: int) -> int:
    """Whole seconds SQS should hold the message: the rest of the wait, at most ``max_delay``."""
    remaining = (due - now).total_seconds()
    return max(0, min(max_delay, math.ceil(remaining)))


def is_early(due: datetime | None, now: datetime) -> bool:
    """True when a message arrived before its due time and must hop again."""
    return due is not None and now < due
