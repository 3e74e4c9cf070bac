"""What operators do after dispatch: enable, disable, delete a subscriber; cancel, recover.

Every end is recorded: a held delivery (its message parked in the platform database) is
recorded here, at once; a queued one is recorded by the worker that meets its message
(within SQS_MAX_DELAY: a message in SQS comes back at least that often), and is already
left out of ``webhooks deliveries --pending``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from kombu.exceptions import OperationalError as BrokerError

from producer import history, subscribers
from producer.dispatch import broker_error, redeliver
from records import deliveries
from records.models import Delivery
from tasks import delivery as worker
from tasks import holds
from tasks.message import DeliveryMessage
from webhooks.errors import InvalidInput, WebhookError
from webhooks.status import Status


@dataclass(frozen=True)
class Enabled:
    """What ``enable`` did with the subscriber's held deliveries."""

    sent: int  # sent again
    unreadable: list[str]  # left held: their parked message no longer opens
    circuit_open_until: datetime | None = None  # not sent: its circuit is open (the workers send them once it closes)
    held: int = 0  # how many stay held for its circuit


def enable(name: str) -> Enabled:
    """Enable NAME and send its held deliveries again (those left held because their parked
    message no longer opens, sealed under a key no longer configured, are named: put that key
    back, second, and enable again). While its circuit is open they stay held: the workers
    send them once a probe closes it (tasks.holds).

    The time a delivery was held does not count against its retry schedule: its first
    failure moves forward by that much, so it keeps every retry it had left. If SQS fails
    meanwhile, those not sent yet stay held, and the workers send them.
    """
    subscriber = subscribers.set_enabled(name, True)
    if subscriber.circuit_open_until is not None:
        held = len(deliveries.held(subscriber.id))
        return Enabled(0, [], subscriber.circuit_open_until, held)
    try:
        sent, unreadable = holds.release(
            subscriber.id, subscriber.name, partial(deliveries.takes_deliveries, subscriber.id)
        )
    except BrokerError as error:
        raise WebhookError(
            f"{name} enabled, but SQS failed while its held deliveries were sent again "
            f"({broker_error(error)}): "
            "those not sent stay held, and the workers send them once SQS answers"
        ) from error
    return Enabled(sent, unreadable)


def disable(name: str) -> None:
    subscribers.set_enabled(name, False)


def delete(name: str) -> int:
    """Delete NAME; its held deliveries are recorded cancelled now, its queued ones when a
    worker meets them. Returns how many pending deliveries it had (held and queued)."""
    subscriber = subscribers.named(name)
    pending = history.pending(subscriber.id, limit=1_000_000)
    _, parked = subscribers.delete(name)
    for message in parked:
        worker.end(DeliveryMessage.read(message), Status.CANCELLED, f"its subscriber {name} was deleted")
    return len(pending)


def cancel(delivery_id: str) -> str:
    """End one pending delivery as cancelled; say what happened."""
    row = deliveries.get(delivery_id)
    if row is None:
        raise InvalidInput(f"no delivery {delivery_id!r} was dispatched (see: webhooks deliveries)")
    last = history.last_status(delivery_id)
    if row.ended_at is not None or (last is not None and Status(last).final):
        raise InvalidInput(
            f"delivery {delivery_id} is not pending: it ended {row.ended_status or last} (see: webhooks show)"
        )
    _end(row, "cancelled by an operator (webhooks cancel)")
    return delivery_id


def cancel_subscriber(name: str, since: datetime | None) -> list[str]:
    """End every pending delivery to NAME (dispatched since ``since``) as cancelled."""
    subscriber = subscribers.named(name)
    ended = []
    for pending in history.pending(subscriber.id, limit=1_000_000):
        if since is not None and pending.dispatched_at < since:
            continue
        row = deliveries.get(pending.delivery_id)
        if row is not None:
            _end(row, f"cancelled by an operator (webhooks cancel --webhook {name})")
            ended.append(pending.delivery_id)
    return ended


def _end(row: Delivery, reason: str) -> None:
    parked = deliveries.end(row.delivery_id, Status.CANCELLED, reason)
    if parked is not None:
        worker.end(DeliveryMessage.read(parked), Status.CANCELLED, reason)


@dataclass(frozen=True)
class Recovery:
    delivery_id: str
    lead_id: str
    status: str  # its last status: what made it a candidate


RECOVERABLE = (Status.ABANDONED, Status.ERROR, Status.CANCELLED, Status.HELD)


def recoverable(name: str, since: datetime, statuses: Sequence[str] = ()) -> list[Recovery]:
    """The deliveries to NAME dispatched since ``since`` that never succeeded and were not
    already redelivered (by recover, redeliver or dispatch --again), whose last record has
    one of ``statuses`` (default: any of RECOVERABLE); queued ones (no attempt yet) are
    left to their first attempt."""
    subscriber = subscribers.named(name)
    rows = deliveries.of_subscriber(subscriber.id, since)
    redelivered = {row.redelivery_of for row in rows if row.redelivery_of} | deliveries.redelivered(
        [row.delivery_id for row in rows]
    )
    rows = [row for row in rows if row.ended_status != Status.SUPERSEDED and row.delivery_id not in redelivered]
    last = history.last_records([row.delivery_id for row in rows])
    wanted = set(statuses or RECOVERABLE)
    found = []
    for row in rows:
        record = last.get(row.delivery_id)
        if record is None:
            continue
        status = Status.CANCELLED if row.ended_status == Status.CANCELLED else Status(record.status)
        if status in wanted and not history.ever_succeeded(row.delivery_id):
            found.append(Recovery(row.delivery_id, row.lead_id, status))
    return found


def recover(found: Sequence[Recovery], each: Callable[[str], None] | None = None) -> list[str]:
    """Redeliver each one (the original's webhook-id; the original superseded)."""
    sent = []
    for one in found:
        sent.append(redeliver(one.delivery_id).delivery_id)
        if each is not None:
            each(one.delivery_id)
    return sent
