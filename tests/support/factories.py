"""Queue messages and audit attempts for the tests (leads: local.leads)."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any


def decoded_layers(raw: str) -> str:
    """Every layer of an SQS message body, base64 and JSON unwrapped, joined for searching."""
    layers = [raw]
    current = raw
    for _ in range(4):
        try:
            current = base64.b64decode(current, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            try:
                inner = json.loads(current)
            except ValueError:
                break
            if isinstance(inner, dict) and isinstance(inner.get("body"), str):
                current = inner["body"]
            else:
                break
        layers.append(current)
    return "\n".join(layers)


def task_kwargs(raw: str) -> dict[str, Any]:
    """The keyword arguments of the Celery task inside an SQS message body."""
    for layer in reversed(decoded_layers(raw).split("\n")):
        try:
            decoded = json.loads(layer)
        except ValueError:
            continue
        if isinstance(decoded, list) and len(decoded) == 3:  # Celery's protocol 2: [args, kwargs, embed]
            return dict(decoded[1])
    raise AssertionError("no Celery task arguments in this message")


def an_attempt(**fields: Any) -> Any:
    """A delivery attempt as the worker records it (tasks.audit.Attempt), dated now."""
    from tasks.audit import Attempt
    from webhooks.clock import utcnow

    delivery_id = fields.pop("delivery_id", str(uuid.uuid4()))
    values: dict[str, Any] = {
        "delivery_id": delivery_id,
        "lead_id": str(uuid.uuid4()),
        "webhook": "audited",
        "url": "http://127.0.0.1:9/audited",
        "retry": 0,
        "status": "success",
        "http_status": 200,
        "error": None,
        "request_headers": {"Content-Type": "application/json", "webhook-id": delivery_id},
        "request_body": json.dumps({"body": {"retry": 0, "city": "La Clusaz"}}, separators=(",", ":")),
        "response_body": '{"received": true}',
        "duration_ms": 12.3456,
        "attempted_at": utcnow(),
        "next_retry_at": None,
        **fields,
    }
    return Attempt(**values)


def a_message(subscriber_id: int = 1, webhook: str = "w", **fields: Any) -> Any:
    """A delivery message (tasks.message.DeliveryMessage) of a fresh delivery of the SPEC's lead."""
    from local.leads import a_lead
    from tasks.message import DeliveryMessage

    values: dict[str, Any] = {
        "delivery_id": str(uuid.uuid4()),
        "subscriber_id": subscriber_id,
        "webhook": webhook,
        "lead": a_lead("shop1"),
        **fields,
    }
    return DeliveryMessage(**values)


def a_state(url: str, name: str = "w", secret: str = "s3cret", subscriber_id: int = 1, **fields: Any) -> Any:
    """A subscriber as a worker sees it (tasks.directory.SubscriberState), its secret sealed."""
    from tasks.directory import SubscriberState
    from webhooks import secretbox

    values: dict[str, Any] = {
        "id": subscriber_id,
        "name": name,
        "url": url,
        "sealed_secret": secretbox.seal(secret),
        "previous_sealed_secret": None,
        "previous_secret_until": None,
        "enabled": True,
        "disabled_reason": None,
        **fields,
    }
    return SubscriberState(**values)
