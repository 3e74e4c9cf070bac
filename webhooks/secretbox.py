"""The subscriber's secret, encrypted at rest and in the queue message (PyNaCl SecretBox),
and the queue message itself, authenticated so that a change in transit is detected.

A sealed secret is the standard base64 of SecretBox's nonce + ciphertext + MAC. A
message's ``mac`` is an HMAC-SHA256 of its canonical JSON (sorted keys, compact) under a
key derived from the encryption key. The first configured key encrypts and signs; every
configured key is tried to decrypt and verify, so a key can be rotated without losing
the messages already in flight.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

import settings
from webhooks.errors import TamperedMessage, UndecryptableSecret


def seal(secret: str, keys: Sequence[bytes] | None = None) -> str:
    """Encrypt ``secret`` under the first key; return standard base64 text."""
    keys = settings.ENCRYPTION_KEYS if keys is None else keys
    if not keys:
        raise UndecryptableSecret(f"no encryption key is configured (WEBHOOK_ENCRYPTION_KEY; {settings.key_hint()})")
    return base64.b64encode(bytes(SecretBox(keys[0]).encrypt(secret.encode("utf-8")))).decode("ascii")


def unseal(sealed: str, keys: Sequence[bytes] | None = None) -> str:
    """Decrypt a sealed secret with any of the keys; UndecryptableSecret otherwise."""
    keys = settings.ENCRYPTION_KEYS if keys is None else keys
    try:
        raw = base64.b64decode(sealed, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise UndecryptableSecret("the sealed secret is not base64") from None
    for key in keys:
        try:
            return SecretBox(key).decrypt(raw).decode("utf-8")
        except (CryptoError, ValueError, UnicodeDecodeError):
            continue
    raise UndecryptableSecret("the secret does not decrypt with any configured key")


def _mac_key(key: bytes) -> bytes:
    """A key for message MACs, derived from an encryption key (never the key itself)."""
    return hashlib.blake2b(b"lead-webhooks message MAC v1", key=key, digest_size=32).digest()


def _canonical(message: Mapping[str, Any]) -> bytes:
    content = {name: value for name, value in message.items() if name != "mac"}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def authenticate(message: Mapping[str, Any], keys: Sequence[bytes] | None = None) -> dict[str, Any]:
    """The message with a ``mac``: HMAC-SHA256 of its canonical JSON under the first key."""
    keys = settings.ENCRYPTION_KEYS if keys is None else keys
    if not keys:
        raise UndecryptableSecret(f"no encryption key is configured (WEBHOOK_ENCRYPTION_KEY; {settings.key_hint()})")
    mac = hmac.new(_mac_key(keys[0]), _canonical(message), hashlib.sha256).hexdigest()
    return {**{name: value for name, value in message.items() if name != "mac"}, "mac": mac}


def check_authentic(message: Mapping[str, Any], keys: Sequence[bytes] | None = None) -> None:
    """TamperedMessage unless the message's ``mac`` matches its content under a configured key."""
    keys = settings.ENCRYPTION_KEYS if keys is None else keys
    received = message.get("mac")
    if not isinstance(received, str):
        raise TamperedMessage("the message carries no MAC")
    try:
        content = _canonical(message)
    except (TypeError, ValueError):
        raise TamperedMessage("the message is not canonical JSON") from None
    for key in keys:
        if hmac.compare_digest(hmac.new(_mac_key(key), content, hashlib.sha256).hexdigest(), received):
            return
    raise TamperedMessage("the message's MAC does not match its content under any configured key")
