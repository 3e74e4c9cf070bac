"""Telling the operators: an ERROR log line, and a signed operational webhook.

Events: ``subscriber.disabled``, ``subscriber.circuit_opened``, ``subscriber.circuit_closed``
and ``delivery.abandoned``. Each is logged at once (logger ``webhooks.operations``). When
``WEBHOOK_OPERATIONS_URL`` is set it is also POSTed there, signed like a lead (the seed's
``X-Hub-Signature*`` and Standard Webhooks' headers) with ``WEBHOOK_OPERATIONS_SECRET``, by a
task of its own (``tasks.notify_operators``): a lead never waits for it. It is tried
``OPERATIONS_ATTEMPTS`` times, SQS holding it between tries; a failure is logged, never
turned into another event (no loop), and never touches a delivery.

The body: ``{"type": "<event>", "timestamp": "<ISO 8601>", "data": {...}}``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

import settings
from tasks import destination, sender, signature
from webhooks import secretbox
from webhooks.clock import now
from webhooks.errors import WebhookError
from webhooks.text import printable

log = logging.getLogger("webhooks.operations")

OPERATIONS_ATTEMPTS = 3  # tries of one operational webhook
OPERATIONS_WAIT = 60  # s SQS holds it between two tries (at most SQS_MAX_DELAY)


def notify(kind: str, data: Mapping[str, Any]) -> None:
    """Log the event as an ERROR line; send it to the operations URL when one is set (best
    effort: a failure to enqueue it is logged, never raised)."""
    shown = " ".join(f"{key}={printable(str(value), one_line=True)}" for key, value in data.items())
    log.error("%s %s", kind, shown)
    if not settings.WEBHOOK_OPERATIONS_URL:
        return
    # authenticated like a delivery message: a queue writer without the key cannot have one signed and sent
    event = secretbox.authenticate(
        {"id": str(uuid.uuid4()), "type": kind, "timestamp": now().isoformat(), "data": dict(data)}
    )
    try:
        from tasks.application import notify_operators

        notify_operators.apply_async(kwargs={"event": event}, task_id=event["id"])
    except Exception as error:  # the broker: the event stays in the log line above
        log.warning("operational webhook %s could not be enqueued: %s", kind, printable(str(error))[:200])


def send(event: Mapping[str, Any]) -> sender.Response:
    """POST one operational event, signed with WEBHOOK_OPERATIONS_SECRET."""
    body = json.dumps(
        {"type": event["type"], "timestamp": event["timestamp"], "data": event["data"]},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": settings.WEBHOOK_USER_AGENT,
        "webhook-id": str(event["id"]),
        **signature.headers(str(event["id"]), int(time.time()), body, [settings.WEBHOOK_OPERATIONS_SECRET]),
    }
    try:
        target = destination.check(settings.WEBHOOK_OPERATIONS_URL)
    except WebhookError as error:
        return sender.Response(None, None, f"operations URL refused: {error}", 0.0)
    return sender.post(target, body, headers)
