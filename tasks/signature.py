"""The signatures of a request: the seed's GitHub-style headers, and Standard Webhooks'.

Every request carries, beside ``webhook-id`` (the delivery id, set by ``tasks.delivery``):

- ``X-Hub-Signature: sha1=<hex>`` (the seed's) and ``X-Hub-Signature-256: sha256=<hex>``:
  HMAC of the exact body bytes;
- ``webhook-timestamp``: this attempt's Unix time in seconds, and ``webhook-signature:
  v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">``, as the Standard
  Webhooks specification (standardwebhooks.com) says, so that its libraries verify them and
  refuse a request replayed after their tolerance (5 minutes).

One key signs them all: the UTF-8 bytes of the subscriber's secret (a UUID string). The
Standard Webhooks libraries take a key as ``whsec_`` + base64 of its bytes: ``whsec()``.

During the grace period of a secret rotation (``webhooks rotate-secret``) both secrets sign:
``webhook-signature`` carries both signatures, space-separated (``v1,<new> v1,<old>``), which
every Standard Webhooks verifier accepts with either secret. ``X-Hub-Signature*`` carry one
signature each, by the previous secret, until the grace period ends: most GitHub-style
verifiers compare the header whole, and a header that must equal the signature of one secret
cannot also equal the other's (HMAC values of two keys differ), so no value satisfies a
partner whichever secret it holds. Signing with the previous secret is the one choice with
which such a partner can switch without a single rejection: it learns the end of the grace
period when it gets the new secret and switches then, instead of at the rotation itself, which
always comes before it has the new secret. The partner's procedure: docs/subscribers.md, "What a
subscriber receives".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

WHSEC_PREFIX = "whsec_"


def key_bytes(secret: str) -> bytes:
    """The HMAC key of a subscriber's secret: its UTF-8 bytes."""
    return secret.encode("utf-8")


def whsec(secret: str) -> str:
    """The Standard Webhooks form of the secret: the same key, as its libraries read it."""
    return WHSEC_PREFIX + base64.b64encode(key_bytes(secret)).decode("ascii")


def hex_digest(secret: str, body: bytes, algorithm: str) -> str:
    return hmac.new(key_bytes(secret), body, algorithm).hexdigest()


def standard_signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One Standard Webhooks signature: ``v1,`` + base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}``."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def headers(webhook_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> dict[str, str]:
    """The signature headers of one attempt (``webhook-id`` itself is the caller's).

    ``secrets``: the current secret first, then, during a rotation's grace period, the
    previous one. ``webhook-signature`` carries one signature per secret, space-separated;
    ``X-Hub-Signature*`` one each, by the oldest secret still signing (see the module).
    """
    if not secrets:
        raise ValueError("at least one secret signs a request")
    hub = secrets[-1]
    signatures = [standard_signature(key_bytes(each), webhook_id, timestamp, body) for each in secrets]
    return {
        "X-Hub-Signature": "sha1=" + hex_digest(hub, body, "sha1"),
        "X-Hub-Signature-256": "sha256=" + hex_digest(hub, body, "sha256"),
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
    }


def verify(secret: str, body: bytes, header_value: str) -> bool:
    """What a receiver of ``X-Hub-Signature*`` does: accept when a signature of the header
    matches, compared in constant time (``sha1=…`` or ``sha256=…``; it also accepts a list
    separated by commas, which this service sent during rotations before Standard Webhooks)."""
    matched = False
    for signature in header_value.split(","):
        algorithm, _, received = signature.strip().partition("=")
        if algorithm in {"sha1", "sha256"}:
            matched |= hmac.compare_digest(hex_digest(secret, body, algorithm), received)
    return matched
