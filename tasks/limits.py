"""At most ``WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIBER`` requests in flight to one subscriber in
one worker process: a slow subscriber cannot take every thread of the pool.

The count is per process (threads share it; no database, no lock beyond the process): with
P worker processes a subscriber may see up to P times the limit. A delivery over the limit
does not wait in a thread: it goes back to SQS for ``OVER_LIMIT_WAIT`` seconds.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import settings

OVER_LIMIT_WAIT = 2  # s SQS holds a delivery that found its subscriber's limit reached

_lock = threading.Lock()
_in_flight: Counter[int] = Counter()


@contextmanager
def slot(subscriber_id: int) -> Iterator[bool]:
    """Yield True with a slot taken (given back on exit), or False when the limit is reached."""
    limit = settings.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIBER
    with _lock:
        taken = limit == 0 or _in_flight[subscriber_id] < limit
        if taken:
            _in_flight[subscriber_id] += 1
    try:
        yield taken
    finally:
        if taken:
            with _lock:
                _in_flight[subscriber_id] -= 1
                if _in_flight[subscriber_id] <= 0:
                    del _in_flight[subscriber_id]


def in_flight(subscriber_id: int) -> int:
    with _lock:
        return _in_flight[subscriber_id]
