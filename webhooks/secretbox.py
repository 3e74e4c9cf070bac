"""The subscriber's secret, encrypted at rest and in the queue message (PyNaCl SecretBox).

A sealed secret is the standard base64 of SecretBox's nonce + ciphertext + MAC. The
first configured key encrypts; every configured key is tried to decrypt, so a key can
be rotated without losing the messages already in flight.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

import settings
from webhooks.errors import UndecryptableSecret


def seal(secret: str, keys: Sequence[bytes] | None = None) -> str:
    """Encrypt ``secret`` under the first key; return standard base64 text."""
    keys = settings.ENCRYPTION_KEYS if keys is None else keys
    if not keys:
        raise UndecryptableSecret("no encryption key is configured (WEBHOOK_ENCRYPTION_KEY)")
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
