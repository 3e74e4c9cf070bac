"""Deliveries held in the platform database while their subscriber cannot take them: disabled
(until ``webhooks enable``), or its circuit open (until a probe succeeds).

A worker that meets such a delivery parks its message (``park``: records.deliveries), records
it ``held`` with what holds it, and lets SQS delete the message: a held delivery takes no
place in the queue the other subscribers are served from, however long it waits, and costs
one database transaction, not a message sent back to SQS again and again.

Each worker process tends the parked deliveries (``tend``), from a thread of its own
(``Tending``), every ``TEND_SECONDS`` and at once after one of its probes closed a circuit.
One statement says which subscribers have deliveries parked (none, most of the time: it
reads the parked rows only); for each, as the worker's cache (tasks.directory) sees it:

- enabled, its circuit closed: its parked deliveries are sent again, oldest first, in batches
  of ``RELEASE_BATCH`` (records.deliveries.send_parked: two workers never send one twice);
- its circuit open, the cool-down over, no probe under way: the oldest parked delivery is
  sent again as the probe, named on the subscriber's row (tasks.circuit.claim_probe), so the
  circuit is probed when its cool-down ends even when no new delivery comes;
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
#: how long a parked delivery sent again as its circuit's probe holds the claim, for its message
#: to come back from SQS (it claims it again on arrival); a claim whose message never came is
#: taken again after it
PROBE_CLAIM_SECONDS = 120.0
#: seconds between two looks at the parked deliveries, in each worker process
TEND_SECONDS = min(max(settings.SUBSCRIBER_CACHE_SECONDS, 0.2), 60.0)


def park(delivery: DeliveryMessage, subscriber: SubscriberState, reason: str, *, circuit_open: bool) -> bool:
    """Park the delivery (sealed) with ``reason`` and record it ``held``; False when what holds it
    is gone by now (the subscriber enabled, its circuit closed): nothing parked, nothing
    recorded, the caller tries it again."""
    held = delivery.but(due_at=None, held_since=delivery.held_since or utcnow())
    if not deliveries.park(held.sealed(), held.row(subscriber.id), reason, while_circuit_open=circuit_open):
        directory.forget()  # this snapshot is stale
        return False
    return True


def send_again(message: Mapping[str, Any], held_at: datetime) -> bool:
    """Publish a parked message again (tasks.deliver_webhook, its id the task id): due now, its
    first failure moved forward by the time it was held. False when it cannot be read (sealed
    under a key no longer configured): it stays parked."""
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
    deliver_webhook.apply_async(kwargs={"delivery": again.sealed()}, task_id=again.delivery_id)
    return True


def tend(now: datetime | None = None) -> int:
    """Look at the parked deliveries once (see the module); how many were sent again."""
    parked = deliveries.parked_counts()
    if not parked:
        return 0
    snapshot = directory.snapshot(older_than=TEND_SECONDS)
    moment = now or utcnow()
    sent = 0
    for subscriber_id in parked:
        state = snapshot.by_id.get(subscriber_id)
        if state is None or not state.enabled:
            continue  # deleted (its held ones were recorded cancelled), or disabled: webhooks enable
        if not state.circuit.open:
            sent += release(state.id, state.name, partial(_takes_deliveries, state.id), _unreadable)[0]
        elif _probe_due(state, moment):
            sent += wake_probe(state)
    return sent


# Parked deliveries this process found unreadable (sealed under a key it does not have): warned
# of once, skipped from then on (they stay parked; `webhooks enable` names them).
_unreadable: set[str] = set()


def release(
    subscriber_id: int, name: str, still: Callable[[], bool] = lambda: True, known: set[str] | None = None
) -> tuple[int, list[str]]:
    """Send every parked delivery of a subscriber taking deliveries again, oldest first, batch
    after batch while ``still()`` says it takes them; how many were sent, and the ids of those
    that stay parked because their message cannot be read (``known``: such ids, skipped, and
    added to: each is warned of once)."""
    sent, unreadable = 0, list[str]()
    while True:
        done, skipped = deliveries.send_parked(
            subscriber_id, send_again, limit=RELEASE_BATCH, skip=(known or set()) | set(unreadable)
        )
        sent += done
        unreadable += skipped
        if done + len(skipped) < RELEASE_BATCH or not still():
            break
    if sent:
        log.info("%d held deliveries to %s sent again: it takes deliveries again", sent, name)
    if known is not None:
        known.update(unreadable)
    return sent, unreadable


def _takes_deliveries(subscriber_id: int) -> bool:
    """Whether this worker's cache says the subscriber takes deliveries (enabled, circuit closed)."""
    current = directory.snapshot(older_than=TEND_SECONDS).by_id.get(subscriber_id)
    return current is not None and current.enabled and not current.circuit.open


def _probe_due(state: SubscriberState, now: datetime) -> bool:
    until = state.circuit.open_until
    probing = state.circuit.probe_until
    return until is not None and until <= now and (probing is None or probing < now)


def wake_probe(state: SubscriberState) -> int:
    """Send the oldest parked delivery of a subscriber whose circuit's cool-down is over, as its
    probe (claimed for it first: one worker sends it)."""
    oldest = deliveries.oldest_parked(state.id)
    if oldest is None or oldest in _unreadable or not circuit.claim_probe(state.id, oldest, PROBE_CLAIM_SECONDS):
        return 0
    sent, _ = deliveries.send_parked(state.id, send_again, limit=1, only=oldest)
    if sent:
        log.info("held delivery %s to %s sent again as its circuit's probe", oldest, state.name)
    return sent


class Tending(threading.Thread):
    """The thread that tends the parked deliveries of one worker process (module-level
    ``tending``, started when the worker is ready): every TEND_SECONDS, and at once when
    ``nudge``d."""

    def __init__(self) -> None:
        super().__init__(name="held-deliveries", daemon=True)
        self._wake = threading.Event()
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                tend()
            except Exception:  # the database or SQS: the next look tries again, nothing is lost
                log.warning("held deliveries could not be tended; tried again in %s s", TEND_SECONDS, exc_info=True)
            self._wake.wait(TEND_SECONDS)
            self._wake.clear()

    def nudge(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
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


def stop_tending() -> None:
    global _tending
    with _tending_lock:
        if _tending is not None:
            _tending.stop()
            _tending = None


def nudge() -> None:
    """Tend now (a circuit this process probed has closed)."""
    current = _tending
    if current is not None:
        current.nudge()
