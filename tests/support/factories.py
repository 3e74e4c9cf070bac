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
    from datetime import UTC, datetime

    from tasks.audit import Attempt

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
        "attempted_at": datetime.now(UTC).replace(tzinfo=None),
        "next_retry_at": None,
        **fields,
    }
    return Attempt(**values)
