"""Dispatch: one ``deliver_webhook`` message per (lead, matching subscriber), once.

Everything is checked before anything is published: every lead is validated and every
message built and measured against SQS's size limit, so a refused input enqueues nothing.
A lead already dispatched to a subscriber is not enqueued for it again (``again`` forces a
redelivery: the original's ``webhook-id``, its pending retries superseded).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kombu.exceptions import OperationalError as BrokerError

import settings
from producer import history, leads, subscribers
from records import deliveries
from records.models import Subscriber
from tasks import app, deliver_webhook, delivery
from tasks.message import DeliveryMessage, summary
from webhooks.clock import utcnow
from webhooks.errors import DispatchFailed, InvalidInput
from webhooks.status import Status

MAX_SHOWN = 20  # refused leads listed one by one
# kombu base64-encodes the Celery message, itself holding the base64 of the JSON arguments
# (1.78x measured), and adds its headers; retries add a few fields.
ENCODING_GROWTH = 16 / 9
ENVELOPE_BYTES = 4096


@dataclass(frozen=True)
class PlannedDelivery:
    """A message ready to publish, and what the user is told about it."""

    row: deliveries.New
    delivery: DeliveryMessage
    supersedes: str | None = None  # the delivery this redelivery ends, if it is still pending

    @property
    def message(self) -> dict[str, Any]:
        """The message as published now: sealed at each read, so that its ``issued_at`` is the
        time of its publish however long the dispatch of the leads before it took (a worker
        refuses one that SQS accepts long after its sealing as a replay: tasks.delivery)."""
        return self.delivery.sealed()

    @property
    def delivery_id(self) -> str:
        return self.row.delivery_id

    @property
    def lead_id(self) -> str:
        return self.row.lead_id

    @property
    def webhook(self) -> str:
        return self.row.webhook


@dataclass
class Plan:
    """What a dispatch will do: the deliveries, and a note for each lead that makes none."""

    deliveries: list[PlannedDelivery] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # per lead: already dispatched, no subscriber matched
    already: int = 0  # (lead, subscriber) pairs skipped: dispatched before
    unmatched: int = 0  # leads that matched no enabled subscriber


def dispatch(lead: Mapping[str, Any], *, again: bool = False) -> list[str]:
    """Validate one lead and enqueue it for every matching subscriber it was not dispatched
    to yet (``again``: to each, as a redelivery); return the delivery ids enqueued."""
    return [delivery.delivery_id for delivery in dispatch_all([lead], again=again).deliveries]


def dispatch_all(raw_leads: Sequence[object], *, again: bool = False, to: Collection[str] | None = None) -> Plan:
    """Check every lead first (nothing is enqueued if one is refused), then enqueue them
    (only to the subscribers named in ``to``, when given)."""
    planned = plan(raw_leads, again=again, to=to)
    enqueue_all(planned.deliveries)
    return planned


def plan(raw_leads: Sequence[object], *, again: bool = False, to: Collection[str] | None = None) -> Plan:
    """Every delivery the leads make (to the matching subscribers named in ``to``, when given), or
    InvalidInput naming every refused lead (lead 1 is the first)."""
    checked: list[tuple[int, dict[str, Any]]] = []
    refused: list[str] = []
    for number, lead in enumerate(raw_leads, start=1):
        try:
            checked.append((number, leads.normalize(lead, f"lead {number}")))
        except InvalidInput as error:
            refused.append(str(error))
    known = [subscriber for subscriber in subscribers.all_subscribers() if to is None or subscriber.name in to]
    matches = {number: subscribers.matching(lead, known, enabled_only=False) for number, lead in checked}
    dispatched = deliveries.existing(
        (str(lead["id"]), subscriber.id) for number, lead in checked for subscriber in matches[number]
    )
    result = Plan()
    for number, lead in checked:
        lead_id = str(lead["id"])
        enabled = [subscriber for subscriber in matches[number] if subscriber.enabled]
        if not enabled:
            disabled = [subscriber.name for subscriber in matches[number]]
            result.unmatched += 1
            result.notes.append(
                f"lead {number} ({lead_id}): "
                + (
                    f"its only subscribers are disabled ({', '.join(disabled)})"
                    if disabled
                    else "matched no subscriber"
                )
            )
            continue
        for subscriber in enabled:
            earlier = dispatched.get((lead_id, subscriber.id))
            if earlier is not None and not again:
                result.already += 1
                result.notes.append(
                    f"lead {number} ({lead_id}): already dispatched to {subscriber.name} as delivery {earlier}"
                    " (--again sends it again)"
                )
                continue
            delivery = planned(subscriber, lead, redelivery_of=earlier)
            size, limit = sqs_size(delivery.message), max_message_bytes()
            if size > limit:
                refused.append(
                    f"lead {number}: its message would take about {size:,} bytes on SQS, above the limit of "
                    f"{limit:,} (the MaximumMessageSize of queue {settings.SQS_QUEUE}): shorten extra_data"
                )
                break
            result.deliveries.append(delivery)
    if refused:
        shown = "\n".join(refused[:MAX_SHOWN])
        more = f"\n... and {len(refused) - MAX_SHOWN} more" if len(refused) > MAX_SHOWN else ""
        raise InvalidInput(
            f"{shown}{more}\n{len(raw_leads)} lead(s) read, {len(refused)} refused: nothing was enqueued"
        )
    return result


def planned(subscriber: Subscriber, lead: Mapping[str, Any], redelivery_of: str | None = None) -> PlannedDelivery:
    """The delivery of one lead to one subscriber; with ``redelivery_of``, a redelivery that
    keeps the original's ``webhook-id`` and supersedes it."""
    delivery_id = str(uuid.uuid4())
    webhook_id = delivery_id
    if redelivery_of is not None:
        original = deliveries.get(redelivery_of)
        webhook_id = original.webhook_id if original is not None else redelivery_of
    message = DeliveryMessage(
        delivery_id=delivery_id,
        subscriber_id=subscriber.id,
        webhook=subscriber.name,
        lead=lead,
        webhook_id=webhook_id,
        dispatched_at=utcnow(),
        redelivery_of=redelivery_of,
    )
    row = deliveries.New(delivery_id, webhook_id, str(lead["id"]), subscriber.id, subscriber.name, redelivery_of)
    return PlannedDelivery(row, message, supersedes=redelivery_of)


def redeliver(delivery_id: str) -> PlannedDelivery:
    """Enqueue the lead of ``delivery_id`` again to its subscriber's current URL and secret:
    a new delivery with a new retry cycle and the original's ``webhook-id``, recorded as a
    redelivery of it; the original's pending retries end, recorded ``superseded``."""
    found = history.of_delivery(delivery_id)
    sent = next((attempt for attempt in reversed(found) if attempt.request_body), None)
    if sent is None:
        raise InvalidInput(
            f"no request of delivery {delivery_id!r} is recorded (see: webhooks deliveries)"
            if not found
            else f"delivery {delivery_id!r} never built a request (it was refused before): nothing to redeliver"
        )
    body = dict(json.loads(sent.request_body)["body"])
    body.pop("retry", None)
    lead = leads.normalize(body, f"the lead of delivery {delivery_id}")
    redelivery = planned(subscribers.named(sent.webhook), lead, redelivery_of=delivery_id)
    enqueue_all([redelivery])
    return redelivery


_max_bytes: dict[str, int] = {}
_max_bytes_lock = threading.Lock()


def max_message_bytes() -> int:
    """The ``MaximumMessageSize`` of the deliveries' queue, read from SQS once per process (the
    queue is created if missing, as the first publish would)."""
    with _max_bytes_lock:
        if settings.SQS_QUEUE not in _max_bytes:
            with app.connection_for_write() as connection:
                channel = connection.default_channel
                _max_bytes[settings.SQS_QUEUE] = int(channel.max_message_bytes(settings.SQS_QUEUE))
        return _max_bytes[settings.SQS_QUEUE]


def sqs_size(message: Mapping[str, Any]) -> int:
    """The size the message takes in an SQS body, from its JSON as kombu serializes it."""
    return int(len(json.dumps({"delivery": message})) * ENCODING_GROWTH) + ENVELOPE_BYTES


def enqueue_all(
    planned: Sequence[PlannedDelivery],
    each: Callable[[PlannedDelivery], None] | None = None,
    *,
    recorded: bool = False,
) -> None:
    """Record the deliveries as dispatched (one statement; not when ``recorded`` already, as
    the held ones sent again), supersede what they redeliver, then publish them one by one
    (``each`` is told of every one enqueued). If the broker fails, the deliveries not
    enqueued end ``cancelled`` and DispatchFailed says how many were."""
    if not recorded:
        deliveries.add([each_one.row for each_one in planned], utcnow())
    for each_one in planned:
        if each_one.supersedes is not None:
            supersede(each_one.supersedes, f"superseded by its redelivery {each_one.delivery_id}")
    done = 0
    try:
        for each_one in planned:
            enqueue(each_one)
            done += 1
            if each is not None:
                each(each_one)
    except BrokerError as error:
        for each_one in planned[done:]:
            deliveries.end(each_one.delivery_id, Status.CANCELLED, f"not enqueued: broker error: {error}")
        raise DispatchFailed(
            f"broker error: {broker_error(error)}",
            enqueued=[each_one.delivery_id for each_one in planned[:done]],
            total=len(planned),
        ) from error


def broker_error(error: BaseException) -> str:
    """What a user is told of a broker error: its first line (300 characters), or its type."""
    return str(error).splitlines()[0][:300] if str(error) else type(error).__name__


def enqueue(planned: PlannedDelivery) -> None:
    """Publish one delivery, sealed now; its id is also the Celery task id."""
    message = planned.message
    deliver_webhook.apply_async(kwargs={"delivery": message}, task_id=planned.delivery_id, kwargsrepr=summary(message))


def supersede(delivery_id: str, reason: str) -> None:
    """End a delivery whose lead is sent again, unless it already ended in the audit."""
    last = history.last_status(delivery_id)
    if last is not None and Status(last).final:
        return
    parked = deliveries.end(delivery_id, Status.SUPERSEDED, reason)
    if parked is not None:  # held: no message of it is in the queue to say so
        delivery.end(DeliveryMessage.read(parked), Status.SUPERSEDED, reason)
