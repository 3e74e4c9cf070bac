"""Dispatch: one ``deliver_webhook`` message per (lead, matching subscriber)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from producer import leads, subscribers
from records.models import Subscriber
from tasks import deliver_webhook
from tasks.delivery import new_message
from webhooks.errors import InvalidInput


@dataclass(frozen=True)
class Enqueued:
    delivery_id: str
    lead_id: str
    webhook: str


def dispatch(lead: Mapping[str, Any]) -> list[str]:
    """Validate one lead and enqueue it for every matching subscriber; return the delivery ids."""
    return [enqueued.delivery_id for enqueued in dispatch_all([lead])]


def dispatch_all(raw_leads: Sequence[object]) -> list[Enqueued]:
    """Validate every lead first (nothing is enqueued if one is refused), then enqueue them."""
    return [enqueue(lead, subscriber) for lead, subscriber in plan(raw_leads)]


def plan(raw_leads: Sequence[object]) -> list[tuple[dict[str, Any], Subscriber]]:
    """Every (lead, matching subscriber) pair, or InvalidInput naming every refused lead."""
    checked: list[dict[str, Any]] = []
    refused: list[str] = []
    for index, lead in enumerate(raw_leads):
        try:
            checked.append(leads.normalize(lead, f"lead {index}"))
        except InvalidInput as error:
            refused.append(str(error))
    if refused:
        shown = "\n".join(refused[:MAX_SHOWN])
        more = f"\n... and {len(refused) - MAX_SHOWN} more" if len(refused) > MAX_SHOWN else ""
        raise InvalidInput(
            f"{shown}{more}\n{len(raw_leads)} lead(s) read, {len(refused)} refused: nothing was enqueued"
        )
    known = subscribers.all_subscribers()
    return [(lead, subscriber) for lead in checked for subscriber in subscribers.matching(lead, known)]


MAX_SHOWN = 20  # refused leads listed one by one


def enqueue(lead: Mapping[str, Any], subscriber: Subscriber) -> Enqueued:
    """Publish one delivery; its id is also the Celery task id and the webhook-id header."""
    delivery_id = str(uuid.uuid4())
    message = new_message(
        webhook=subscriber.name,
        url=subscriber.url,
        sealed_secret=subscriber.sealed_secret,  # sealed at rest, travels sealed
        lead=lead,
        delivery_id=delivery_id,
    )
    deliver_webhook.apply_async(kwargs={"delivery": message}, task_id=delivery_id)
    return Enqueued(delivery_id, str(lead["id"]), subscriber.name)
