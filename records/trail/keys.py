"""The trail keys: one derived from each configured encryption key, the first one current.

A trail key is derived (records.canonical.trail_key) from an encryption key of
WEBHOOK_ENCRYPTION_KEY, which every worker and producer already holds and the database
never does. The current one MACs every new record and checkpoint; every configured one is
accepted while verifying, so that a key rotation (WEBHOOK_ENCRYPTION_KEY=NEW,OLD) keeps the
older records verifiable. Each MAC names its trail key by ``key_id``, never by the key.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import settings
from records import canonical
from webhooks.errors import AuditError


@dataclass(frozen=True)
class TrailKey:
    id: str
    key: bytes = field(repr=False)


def configured(encryption_keys: Sequence[bytes] | None = None) -> tuple[TrailKey, ...]:
    """The trail keys of the configured encryption keys (``settings.ENCRYPTION_KEYS``), current first."""
    return _derive(tuple(settings.ENCRYPTION_KEYS if encryption_keys is None else encryption_keys))


@functools.cache
def _derive(encryption_keys: tuple[bytes, ...]) -> tuple[TrailKey, ...]:
    keys = []
    for encryption_key in encryption_keys:
        key = canonical.trail_key(encryption_key)
        keys.append(TrailKey(canonical.key_id(key), key))
    return tuple(keys)


def current(encryption_keys: Sequence[bytes] | None = None) -> TrailKey:
    """The trail key that MACs what is written now; AuditError when no encryption key is configured."""
    keys = configured(encryption_keys)
    if not keys:
        raise AuditError(
            "no encryption key is configured (WEBHOOK_ENCRYPTION_KEY): the audit trail is authenticated "
            f"with a key derived from it; set the workers' key ({settings.key_hint()})"
        )
    return keys[0]


def by_id(encryption_keys: Sequence[bytes] | None = None) -> dict[str, bytes]:
    """Every configured trail key by its id; AuditError when there is none."""
    current(encryption_keys)
    return {key.id: key.key for key in configured(encryption_keys)}


def record_authentic(keys: Mapping[str, bytes], key_id: str | None, mac: str | None, record_hash: str) -> bool:
    """True when ``mac`` is the record MAC of ``record_hash`` under the configured trail key ``key_id``."""
    key = keys.get(key_id or "")
    return key is not None and mac is not None and _same(canonical.record_mac(key, record_hash), mac)


def checkpoint_authentic(keys: Mapping[str, bytes], key_id: str | None, mac: str | None, digest: str) -> bool:
    """True when ``mac`` is the checkpoint MAC of ``digest`` under the configured trail key ``key_id``."""
    key = keys.get(key_id or "")
    return key is not None and mac is not None and _same(canonical.checkpoint_mac(key, digest), mac)


def _same(expected: str, found: str) -> bool:
    """Constant-time comparison; ``found`` comes from the database and may hold anything."""
    return hmac.compare_digest(expected.encode("ascii"), found.encode("utf-8"))
