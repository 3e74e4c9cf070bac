"""HMAC signatures of the exact body bytes, GitHub style.

``X-Hub-Signature: sha1=<hex>`` is the seed's header; ``X-Hub-Signature-256:
sha256=<hex>`` lets receivers verify with a modern hash. Both are keyed with the
subscriber's secret (its UTF-8 bytes).
"""

from __future__ import annotations

import hmac


def hex_digest(secret: str, body: bytes, algorithm: str) -> str:
    return hmac.new(secret.encode("utf-8"), body, algorithm).hexdigest()


def headers(secret: str, body: bytes) -> dict[str, str]:
    return {
        "X-Hub-Signature": "sha1=" + hex_digest(secret, body, "sha1"),
        "X-Hub-Signature-256": "sha256=" + hex_digest(secret, body, "sha256"),
    }


def verify(secret: str, body: bytes, header_value: str) -> bool:
    """What a receiver does: compare in constant time (``sha1=...`` or ``sha256=...``)."""
    algorithm, _, received = header_value.partition("=")
    if algorithm not in {"sha1", "sha256"}:
        return False
    expected = hex_digest(secret, body, algorithm)
    return hmac.compare_digest(expected, received)
