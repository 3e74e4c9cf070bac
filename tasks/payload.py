"""The JSON document POSTed to a subscriber: ``{"body": {...lead..., "retry": n}}``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def build(lead: Mapping[str, Any], retry: int) -> dict[str, Any]:
    """The payload of one attempt; ``retry`` comes second, right after ``created_at``."""
    body: dict[str, Any] = {"created_at": lead["created_at"], "retry": retry}
    body.update((key, value) for key, value in lead.items() if key not in body)
    return {"body": body}


def encode(payload: Mapping[str, Any]) -> bytes:
    """Serialize once: these exact bytes are signed, sent and recorded."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
