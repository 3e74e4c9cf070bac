"""The canonical form of audit records and checkpoints, their SHA-256 hashes (format 1), and their MACs.

Pure functions, no database: the writer, ``webhooks audit verify`` and the evidence
export all hash through here, and a third party can redo it from ``SPEC`` alone.

A delivery attempt has two hashes:

- ``content_hash`` = SHA-256 of the canonical JSON of its content (what was sent, when,
  what came back): ``{"type": "delivery_attempt/1", "delivery_id": …, …}``;
- ``record_hash`` = SHA-256 of the canonical JSON of its link in its chain:
  ``{"type": "link/1", "chain", "seq", "prev_id", "prev_hash", "content_hash"}``.

So a chain can be checked from the links alone (without the other leads' data), and
a record's content from its ``content_hash``. A checkpoint hashes
``{"type": "checkpoint/1", "seq", "kind", "created_at", "prev_hash", "heads", "floors", "detail"}``.

The hashes are public (anyone can recompute them), so they show a change but not who made
it. Each record and checkpoint also carries a MAC: HMAC-SHA256 of its hash under the
*trail key*, derived from an encryption key (WEBHOOK_ENCRYPTION_KEY) that the database
never holds, and the id of that trail key (``key_id``, which reveals nothing of it).
Someone with write access to the database alone can recompute the hashes, not the MACs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# prev_hash of the first record of a chain and of the first checkpoint
ZERO_HASH = "0" * 64

CONTENT_TYPE = "delivery_attempt/1"
LINK_TYPE = "link/1"
CHECKPOINT_TYPE = "checkpoint/1"

# The content of a delivery attempt, in the order of the table (the JSON is sorted anyway).
CONTENT_FIELDS = (
    "delivery_id",
    "lead_id",
    "webhook",
    "url",
    "retry",
    "status",
    "http_status",
    "error",
    "request_headers",
    "request_body",
    "response_body",
    "duration_ms",
    "attempted_at",
    "next_retry_at",
)
# Added in schema 0003: part of the content only when not null, so older records hash as before.
OPTIONAL_CONTENT_FIELDS = ("redelivery_of", "address")
LINK_FIELDS = ("chain", "seq", "prev_id", "prev_hash", "content_hash")
CHECKPOINT_FIELDS = ("seq", "kind", "created_at", "prev_hash", "heads", "floors", "detail")

SPEC = """\
Canonical form (format 1). A value is serialized as JSON with its object keys sorted,
no whitespace (separators "," and ":"), non-ASCII characters kept as UTF-8 (not \\u-escaped),
then encoded as UTF-8: in Python, json.dumps(value, sort_keys=True, separators=(",", ":"),
ensure_ascii=False).encode("utf-8"). Hashes are lowercase hex SHA-256 of those bytes.
Times are UTC strings "YYYY-MM-DDTHH:MM:SS.ffffffZ" (always six fractional digits);
duration_ms is a string with exactly three decimals ("12.345"); absent values are null;
request_headers is an object of strings; retry, seq, prev_id and http_status are integers.
content_hash = SHA-256(canonical({"type": "delivery_attempt/1", delivery_id, lead_id, webhook,
  url, retry, status, http_status, error, request_headers, request_body, response_body,
  duration_ms, attempted_at, next_retry_at}, plus redelivery_of and address when not null)).
record_hash  = SHA-256(canonical({"type": "link/1", chain, seq, prev_id, prev_hash, content_hash})).
The first record of a chain has seq 1, prev_id null and prev_hash "000…0" (64 zeros); each
next record has seq + 1, the id and record_hash of the one before it.
checkpoint hash = SHA-256(canonical({"type": "checkpoint/1", seq, kind, created_at, prev_hash,
  heads, floors, detail})); heads maps a chain to {"id", "seq", "hash"} of its last record
  at that time; checkpoints form one chain of their own (seq 1, 2, … and prev_hash).
MACs. trail key = BLAKE2b (32-byte digest) keyed with the 32 bytes of an encryption key, of the
  ASCII message "lead-webhooks audit trail v1"; key_id = hex BLAKE2b (8-byte digest) keyed with
  the trail key, of "lead-webhooks audit trail key id v1".
record mac     = hex HMAC-SHA256(trail key, "record " + record_hash), in ASCII.
checkpoint mac = hex HMAC-SHA256(trail key, "checkpoint " + checkpoint hash), in ASCII.
"""


TRAIL_KEY_CONTEXT = b"lead-webhooks audit trail v1"
KEY_ID_CONTEXT = b"lead-webhooks audit trail key id v1"


def canonical(value: Any) -> bytes:
    """The canonical bytes of a JSON value (see ``SPEC``)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def moment(value: datetime | None) -> str | None:
    """A stored time (naive UTC, or aware) as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def duration(value: float) -> str:
    """Milliseconds with exactly three decimals: a float's digits survive no database unchanged."""
    return f"{value:.3f}"


def content(fields: Mapping[Any, Any]) -> dict[str, Any]:
    """The canonical content of an attempt, from its column values (a row, or the writer's values)."""
    values: dict[str, Any] = {"type": CONTENT_TYPE}
    for name in CONTENT_FIELDS:
        value = fields[name]
        if name in ("attempted_at", "next_retry_at"):
            value = moment(value)
        elif name == "duration_ms":
            value = duration(value)
        elif name == "request_headers":
            value = {str(key): str(item) for key, item in (value or {}).items()}
        values[name] = value
    for name in OPTIONAL_CONTENT_FIELDS:
        if fields.get(name) is not None:
            values[name] = str(fields[name])
    return values


def content_hash(fields: Mapping[Any, Any]) -> str:
    return sha256(canonical(content(fields)))


def link(chain: str, seq: int, prev_id: int | None, prev_hash: str, content_digest: str) -> dict[str, Any]:
    return {
        "type": LINK_TYPE,
        "chain": chain,
        "seq": seq,
        "prev_id": prev_id,
        "prev_hash": prev_hash,
        "content_hash": content_digest,
    }


def record_hash(chain: str, seq: int, prev_id: int | None, prev_hash: str, content_digest: str) -> str:
    return sha256(canonical(link(chain, seq, prev_id, prev_hash, content_digest)))


def checkpoint(
    seq: int,
    kind: str,
    created_at: datetime,
    prev_hash: str,
    heads: Mapping[str, Any],
    floors: Mapping[str, Any],
    detail: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "type": CHECKPOINT_TYPE,
        "seq": seq,
        "kind": kind,
        "created_at": moment(created_at),
        "prev_hash": prev_hash,
        "heads": dict(heads),
        "floors": dict(floors),
        "detail": dict(detail),
    }


def checkpoint_hash(
    seq: int,
    kind: str,
    created_at: datetime,
    prev_hash: str,
    heads: Mapping[str, Any],
    floors: Mapping[str, Any],
    detail: Mapping[str, Any],
) -> str:
    return sha256(canonical(checkpoint(seq, kind, created_at, prev_hash, heads, floors, detail)))


def trail_key(encryption_key: bytes) -> bytes:
    """The key of the trail's MACs, derived from an encryption key (never the key itself)."""
    return hashlib.blake2b(TRAIL_KEY_CONTEXT, key=encryption_key, digest_size=32).digest()


def key_id(trail_key: bytes) -> str:
    """The public name of a trail key: 16 hex digits that reveal nothing of it."""
    return hashlib.blake2b(KEY_ID_CONTEXT, key=trail_key, digest_size=8).hexdigest()


def record_mac(trail_key: bytes, record_digest: str) -> str:
    return hmac.digest(trail_key, b"record " + record_digest.encode("utf-8"), "sha256").hex()


def checkpoint_mac(trail_key: bytes, checkpoint_digest: str) -> str:
    return hmac.digest(trail_key, b"checkpoint " + checkpoint_digest.encode("utf-8"), "sha256").hex()
