"""HMAC signatures of the exact body bytes, GitHub style.

``X-Hub-Signature: sha1=<hex>`` is the seed's header; ``X-Hub-Signature-256:
sha256=<hex>`` lets receivers verify with a modern hash. Both are keyed with the
subscriber's secret (its UTF-8 bytes). For a grace period after ``webhooks rotate-secret``
each header carries two signatures, the new secret's first: ``sha256=<new>,sha256=<old>``.
"""

from __future__ import annotations

import hmac


def hex_digest(secret: str, body: bytes, algorithm: str) -> str:
    return hmac.new(secret.encode("utf-8"), body, algorithm).hexdigest()


def headers(secret: str, body: bytes, *older: str) -> dict[str, str]:
    """The signature headers; during a secret rotation, one signature per secret, newest
    first, separated by commas (``sha256=<new>,sha256=<old>``)."""
    secrets = (secret, *older)
    return {
        "X-Hub-Signature": ",".join("sha1=" + hex_digest(each, body, "sha1") for each in secrets),
        "X-Hub-Signature-256": ",".join("sha256=" + hex_digest(each, body, "sha256") for each in secrets),
    }


def verify(secret: str, body: bytes, header_value: str) -> bool:
    """What a receiver does: accept when any of the header's signatures matches, compared in
    constant time (``sha1=…`` or ``sha256=…``, several separated by commas)."""
    matched = False
    for signature in header_value.split(","):
        algorithm, _, received = signature.strip().partition("=")
        if algorithm in {"sha1", "sha256"}:
            matched |= hmac.compare_digest(hex_digest(secret, body, algorithm), received)
    return matched
