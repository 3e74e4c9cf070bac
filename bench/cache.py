"""What the subscriber features add to a delivery on the healthy path, priced in one process:
the worker's own code (tasks.directory, tasks.limits) against the run's database, CPU time of
the calling thread, below the noise of two whole drains (which move by ±0.5 ms a delivery from
one round to the next on this shared machine).

With the features on, a worker loads its snapshot again every SUBSCRIBER_CACHE_SECONDS: the
subscribers and the ended deliveries (two statements) and, with the breaker on, the fleet's
recent outcomes grouped by subscriber (a third); and its tending thread (tasks.holds) looks
for parked deliveries as often (one statement; off, once a minute). Their CPU is spread over
the deliveries a worker makes meanwhile: ``(load_ms + look_ms) / (rate x bound)`` (an idle
worker pays them every bound, whatever it delivers). The per-delivery checks
(the subscriber and ended-delivery lookups, the circuit's state, the in-flight slot) are made
with the features off too; they are priced here whole: an upper bound of what they add.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

#: calls per batch of the checks, and batches (the median batch is kept)
CHECKS, BATCHES = 20_000, 7
#: loads timed (the median is kept)
LOADS = 21


@dataclass(frozen=True)
class Price:
    load_ms: float  # CPU of one load of the snapshot, the circuits judged
    look_ms: float  # CPU of one look for parked deliveries (none parked: the healthy path)
    checks_ms: float  # CPU of one delivery's lookups and checks
    rate: float  # deliveries a second a worker makes (the run's delivery drains)
    bound: float  # SUBSCRIBER_CACHE_SECONDS

    @property
    def per_delivery_ms(self) -> float:
        """The checks, and a load's and a look's share: the cost of the cache on the healthy path."""
        return self.checks_ms + self.share_ms

    @property
    def share_ms(self) -> float:
        """What a delivery bears of a load and a look (both every ``bound`` seconds)."""
        return (self.load_ms + self.look_ms) / (self.rate * self.bound)


def thread_cpu_ms(run: Callable[[], object], calls: int) -> float:
    """CPU milliseconds of the calling thread per call of ``run``, over ``calls`` calls."""
    started = time.thread_time()
    for _ in range(calls):
        run()
    return (time.thread_time() - started) * 1000 / calls


def price(subscriber_id: int, name: str, rate: float) -> Price:
    """Price a load and a delivery's checks for the subscriber ``subscriber_id`` (``name``), at
    ``rate`` deliveries a second. Settings as the worker's (the run's environment)."""
    import settings
    from records import deliveries
    from tasks import directory, holds, limits

    if not settings.WEBHOOK_CIRCUIT_BREAKER or settings.SUBSCRIBER_CACHE_SECONDS <= 0:
        raise ValueError("the features are off in this environment: nothing to price")
    if holds.TEND_SECONDS != settings.SUBSCRIBER_CACHE_SECONDS:
        raise ValueError(
            f"the looks come every {holds.TEND_SECONDS} s, the loads every {settings.SUBSCRIBER_CACHE_SECONDS} s"
        )
    queue = f"{settings.SQS_QUEUE}-nothing-parked"
    cache = directory.Directory(settings.SUBSCRIBER_CACHE_SECONDS)
    if cache.subscriber(subscriber_id, name, None) is None:
        raise ValueError(f"subscriber {subscriber_id} ({name}) is not in the database")

    def checks() -> None:
        state = cache.subscriber(subscriber_id, name, None)
        assert state is not None
        cache.ended("a delivery id")
        if state.circuit.open:
            raise AssertionError(f"{name}'s circuit is open: not the healthy path")
        with limits.slot(state.id) as taken:
            assert taken

    def look() -> None:
        if deliveries.parked_counts(queue):
            raise AssertionError(f"deliveries are parked from {queue}: not the healthy path")

    load_ms = statistics.median(thread_cpu_ms(directory.load, 1) for _ in range(LOADS))
    look_ms = statistics.median(thread_cpu_ms(look, 1) for _ in range(LOADS))
    checks_ms = statistics.median(thread_cpu_ms(checks, CHECKS) for _ in range(BATCHES))
    return Price(load_ms, look_ms, checks_ms, rate, settings.SUBSCRIBER_CACHE_SECONDS)
