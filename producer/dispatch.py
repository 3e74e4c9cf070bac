"""Dispatch: one ``deliver_webhook`` message per (lead, matching subscriber).

Everything is checked before anything is published: every lead is validated and every
message built and measured against SQS's size limit, so a refused input enqueues nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import settings
from producer import history, leads, subscribers
from records.models import Subscriber
from tasks import deliver_webhook
from tasks.delivery import new_message, summary
from webhooks.errors import InvalidInput

MAX_SHOWN = 20  # refused leads listed one by one
# kombu base64-encodes the Celery message, itself holding the base64 of the JSON arguments
# (1.78x measured), and adds its headers; retries add a few fields.
ENCODING_GROWTH = 16 / 9
ENVELOPE_BYTES = 4096


@dataclass(frozen=True)
class Delivery:
    """A message ready to publish, and what the user is told about it."""

    delivery_id: str
    lead_id: str
    webhook: str
    message: dict[str, Any]


def dispatch(lead: Mapping[str, Any]) -> list[str]:
    """Validate one lead and enqueue it for every matching subscriber; return the delivery ids."""
    return [delivery.delivery_id for delivery in dispatch_all([lead])]


def dispatch_all(raw_leads: Sequence[object], to: Collection[str] | None = None) -> list[Delivery]:
    """Check every lead first (nothing is enqueued if one is refused), then enqueue them
    (only to the subscribers named in ``to``, when given)."""
    planned = plan(raw_leads, to)
    for delivery in planned:
        enqueue(delivery)
    return planned


def plan(raw_leads: Sequence[object], to: Collection[str] | None = None) -> list[Delivery]:
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
    planned: list[Delivery] = []
    for number, lead in checked:
        for subscriber in subscribers.matching(lead, known):
            delivery_id = str(uuid.uuid4())
            message = message_for(subscriber, lead, delivery_id)
            size = sqs_size(message)
            if size > settings.SQS_MAX_MESSAGE_BYTES:
                refused.append(
                    f"lead {number}: its message would take about {size:,} bytes on SQS, above the limit of "
                    f"{settings.SQS_MAX_MESSAGE_BYTES:,} (SQS_MAX_MESSAGE_BYTES): shorten extra_data"
                )
                break
            planned.append(Delivery(delivery_id, str(lead["id"]), subscriber.name, message))
    if refused:
        shown = "\n".join(refused[:MAX_SHOWN])
        more = f"\n... and {len(refused) - MAX_SHOWN} more" if len(refused) > MAX_SHOWN else ""
        raise InvalidInput(
            f"{shown}{more}\n{len(raw_leads)} lead(s) read, {len(refused)} refused: nothing was enqueued"
        )
    return planned


def message_for(
    subscriber: Subscriber, lead: Mapping[str, Any], delivery_id: str, redelivery_of: str | None = None
) -> dict[str, Any]:
    """The deliver_webhook message of one lead to one subscriber (secrets travel sealed)."""
    return new_message(
        webhook=subscriber.name,
        url=subscriber.url,
        sealed_secret=subscriber.sealed_secret,
        lead=lead,
        delivery_id=delivery_id,
        previous_sealed_secret=subscriber.previous_sealed_secret,
        previous_secret_until=subscriber.previous_secret_until,
        redelivery_of=redelivery_of,
    )


def redeliver(delivery_id: str) -> Delivery:
    """Enqueue again what ``delivery_id`` sent, as a new delivery with a new retry cycle,
    to the subscriber's current URL and secret; recorded as a redelivery of the original."""
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
    subscriber = subscribers.named(sent.webhook)
    new_id = str(uuid.uuid4())
    delivery = Delivery(new_id, str(lead["id"]), subscriber.name, message_for(subscriber, lead, new_id, delivery_id))
    enqueue(delivery)
    return delivery


def sqs_size(message: Mapping[str, Any]) -> int:
    """The size the message takes in an SQS body, from its JSON as kombu serializes it."""
    return int(len(json.dumps({"delivery": message})) * ENCODING_GROWTH) + ENVELOPE_BYTES


def enqueue(delivery: Delivery) -> None:
    """Publish one delivery; its id is also the Celery task id and the webhook-id header."""
    deliver_webhook.apply_async(
        kwargs={"delivery": delivery.message}, task_id=delivery.delivery_id, kwargsrepr=summary(delivery.message)
    )
