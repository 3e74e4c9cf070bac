"""Deliveries held in the platform database while their subscriber cannot take them: disabled
(until ``webhooks enable``), or its circuit open (until a probe succeeds).

A worker that meets such a delivery parks its message (``park``: records.deliveries), records
it ``held`` with what holds it, and lets SQS delete the message: a held delivery takes no
place in the queue the other subscribers are served from, however long it waits, and costs
one database transaction, not a message sent back to SQS again and again.

Each worker process tends the parked deliveries (``tend``), from a thread of its own
(``Tending``), every ``TEND_SECONDS`` and at once after one of its probes closed a circuit.
A parked delivery keeps the queue it came from, and the workers serving that queue (in
production, all of them) look after it. One statement says which subscribers have deliveries
parked from it (none, most of the time; it reads an index of the parked entries alone); for
each, as the worker's cache (tasks.directory) sees it:

- enabled, its circuit closed: its parked deliveries are sent again, oldest first, in batches
  of ``RELEASE_BATCH`` (records.deliveries.send_parked: two workers never send one twice), the
  database asked before each batch whether it still takes them. A circuit that closed moments
  ago lets ``RELEASE_BATCH`` go at the first look, twice as many at each look after (a slow
  start): a subscriber that answers its probe and fails again at once gets a few of them sent
  round again, not all;
- its circuit open, the cool-down over, no probe under way: the oldest parked delivery (that
  can be read) is sent again for the probe (tasks.circuit.claim_parked_probe), so the circuit
  is probed when its cool-down ends even when no new delivery comes (the first delivery to
  arrive is the probe, that one or another);
- disabled: nothing (``webhooks enable`` sends them again; so does this, once it is enabled).

A delivery sent again is sealed anew, due at once, and its schedule moves forward by the time
it was held (its first failure with it): a hold never uses up its retries.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any

import settings
from records import deliveries
from tasks import audit, circuit
from tasks.directory import SubscriberState, directory
from tasks.message import DeliveryMessage
from webhooks.clock import utcnow
from webhooks.errors import WebhookError
from webhooks.text import printable

log = logging.getLogger(audit.LOGGER_NAME)

#: messages sent again per transaction (their rows locked meanwhile)
RELEASE_BATCH = 50
#: how long a parked delivery sent again for its circuit's probe keeps another from being sent,
#: its message on its way (the first delivery to arrive takes the probe over)
PROBE_CLAIM_SECONDS = 120.0
#: seconds between two looks at the parked deliveries, in each worker process
TEND_SECONDS = min(max(settings.SUBSCRIBER_CACHE_SECONDS, 0.5), 60.0)
#: the slow start after a circuit closes: RELEASE_BATCH x 2**(looks since it closed), at most this power
MAX_DOUBLINGS = 12


def park(
    delivery: DeliveryMessage, subscriber: SubscriberState, reason: str, *, circuit_open: bool
) -> deliveries.Parking:
    """Park the delivery (sealed) with ``reason`` (records.deliveries.park says what it did: when
    what holds it is gone by now, the subscriber enabled or its circuit closed, nothing is
    parked and this worker's cache is reloaded)."""
    held = delivery.but(due_at=None, held_since=delivery.held_since or utcnow())
    row = held.row(subscriber.id)
    done = deliveries.park(held.sealed(), row, reason, settings.SQS_QUEUE, while_circuit_open=circuit_open)
    if done.free:
        directory.forget()  # this snapshot is stale
    return done


def send_again(message: Mapping[str, Any], held_at: datetime, queue: str | None = None) -> bool:
    """Publish a parked message again (tasks.deliver_webhook, its id the task id) to ``queue``,
    the one it was taken from (this process's own when not known): due now, its first failure
    moved forward by the time it was held. False when it cannot be read (sealed under a key no
    longer configured): it stays parked."""
    from tasks.application import deliver_webhook  # the application imports this module

    try:
        held = DeliveryMessage.read(message)
    except WebhookError as error:
        named = printable(repr(message.get("delivery_id")), one_line=True)[:80]
        log.warning("held delivery %s stays held: its message cannot be read (%s)", named, error)
        return False
    since = held.held_since or held_at
    now = utcnow()
    shifted = held.first_failure_at + (now - since) if held.first_failure_at and now > since else held.first_failure_at
    again = held.but(due_at=None, held_since=None, first_failure_at=shifted)
    deliver_webhook.apply_async(kwargs={"delivery": again.sealed()}, task_id=again.delivery_id, queue=queue)
    return True


def tend(now: datetime | None = None, stopping: Callable[[], bool] = lambda: False) -> int:
    """Look at the parked deliveries once (see the module); how many were sent again."""
    parked = deliveries.parked_counts(settings.SQS_QUEUE)
    if not parked:
        return 0
    snapshot = directory.snapshot(older_than=TEND_SECONDS)
    moment = now or utcnow()
    sent = 0
    for subscriber_id in parked:
        if stopping():
            break
        state = snapshot.by_id.get(subscriber_id)
        if state is None or not state.enabled:
            continue  # deleted (its held ones were recorded cancelled), or disabled: webhooks enable
        if not state.circuit.open:
            still = partial(_takes_deliveries, state.id, stopping)
            budget = _budget(state, moment)
            sent += release(state.id, state.name, still, _unreadable, budget, settings.SQS_QUEUE)[0]
        elif _probe_due(state, moment):
            sent += wake_probe(state)
    return sent


# Parked deliveries this process found unreadable (sealed under a key it does not have): warned
# of once, skipped from then on (they stay parked; `webhooks enable` names them).
_unreadable: set[str] = set()


def release(
    subscriber_id: int,
    name: str,
    still: Callable[[], bool] = lambda: True,
    known: set[str] | None = None,
    limit: int | None = None,
    queue: str | None = None,
) -> tuple[int, list[str]]:
    """Send the parked deliveries of a subscriber taking deliveries again (``limit`` of them at
    most; those from ``queue`` only, when given), oldest first, batch after batch while
    ``still()`` says it takes them; how many were sent, and the ids of those that stay parked
    because their message cannot be read (``known``: such ids, skipped, and added to: each is
    warned of once)."""
    sent, unreadable = 0, list[str]()
    while still():
        batch = RELEASE_BATCH if limit is None else min(RELEASE_BATCH, limit - sent)
        if batch <= 0:
            break
        done, skipped = deliveries.send_parked(
            subscriber_id, send_again, limit=batch, skip=(known or set()) | set(unreadable), queue=queue
        )
        sent += done
        unreadable += skipped
        if done + len(skipped) < batch:
            break
    if sent:
        log.info("%d held deliveries to %s sent again: it takes deliveries again", sent, name)
    if known is not None:
        known.update(unreadable)
    return sent, unreadable


def _budget(state: SubscriberState, now: datetime) -> int | None:
    """How many parked deliveries one look may send again (the slow start after a closing)."""
    closed_at = state.circuit.closed_at
    if closed_at is None:
        return None
    looks = max(0, int((now - closed_at).total_seconds() / TEND_SECONDS))
    return None if looks > MAX_DOUBLINGS else RELEASE_BATCH * 2**looks


def _takes_deliveries(subscriber_id: int, stopping: Callable[[], bool] = lambda: False) -> bool:
    """Whether the subscriber takes deliveries (enabled, circuit closed), as the database says
    now (not the cache: one that failed again moments ago gets no more), and the worker is not
    stopping."""
    return not stopping() and deliveries.takes_deliveries(subscriber_id)


def _probe_due(state: SubscriberState, now: datetime) -> bool:
    until = state.circuit.open_until
    probing = state.circuit.probe_until
    return until is not None and until <= now and (probing is None or probing < now)


def wake_probe(state: SubscriberState) -> int:
    """Send the oldest readable parked delivery of a subscriber whose circuit's cool-down is over,
    for its probe (claimed first: one worker sends one; given up when it could not be sent)."""
    oldest = deliveries.oldest_parked(state.id, settings.SQS_QUEUE, skip=_unreadable)
    if oldest is None or not circuit.claim_parked_probe(state.id, oldest, PROBE_CLAIM_SECONDS):
        return 0
    sent = 0
    try:
        sent, unreadable = deliveries.send_parked(state.id, send_again, limit=1, only=oldest)
        _unreadable.update(unreadable)
    finally:
        if not sent:
            circuit.unclaim_parked_probe(state.id, oldest)
    if sent:
        log.info("held delivery %s to %s sent again for its circuit's probe", oldest, state.name)
    return sent


class Tending(threading.Thread):
    """The thread that tends the parked deliveries of one worker process (module-level
    ``tending``, started when the worker is ready): every TEND_SECONDS, and at once when
    ``nudge``d."""

    def __init__(self) -> None:
        super().__init__(name="held-deliveries", daemon=True)
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                tend(stopping=self._stopping.is_set)
            except Exception:  # the database or SQS: the next look tries again, nothing is lost
                log.warning("held deliveries could not be tended; tried again in %s s", TEND_SECONDS, exc_info=True)
            self._wake.wait(TEND_SECONDS)
            self._wake.clear()

    def nudge(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()


_tending: Tending | None = None
_tending_lock = threading.Lock()


def start_tending() -> None:
    """Start this process's tending thread (once)."""
    global _tending
    with _tending_lock:
        if _tending is None or not _tending.is_alive():
            _tending = Tending()
            _tending.start()


def stop_tending(timeout: float = 10.0) -> None:
    """Stop this process's tending thread; wait for the batch it is sending, if any (a batch cut
    short leaves its messages parked: those already published would be sent twice)."""
    global _tending
    with _tending_lock:
        if _tending is not None:
            _tending.stop()
            _tending.join(timeout)
            _tending = None


def nudge() -> None:
    """Tend now (a circuit this process probed has closed)."""
    current = _tending
    if current is not None:
        current.nudge()
