from __future__ import annotations

import base64

import pytest

import settings
from webhooks import secretbox
from webhooks.errors import ConfigurationError, UndecryptableSecret

KEY_A, KEY_B = bytes(32), bytes(range(32))


def test_a_sealed_secret_opens_with_its_key_and_does_not_show_the_secret() -> None:
    sealed = secretbox.seal("25af5d78-572c-4d29-ae42-999d499f43db", [KEY_A])
    assert "25af5d78" not in sealed
    assert secretbox.unseal(sealed, [KEY_A]) == "25af5d78-572c-4d29-ae42-999d499f43db"


def test_sealing_twice_gives_two_different_ciphertexts() -> None:
    assert secretbox.seal("same", [KEY_A]) != secretbox.seal("same", [KEY_A])


def test_a_wrong_key_a_changed_ciphertext_or_garbage_is_undecryptable() -> None:
    sealed = secretbox.seal("secret", [KEY_A])
    with pytest.raises(UndecryptableSecret):
        secretbox.unseal(sealed, [KEY_B])
    raw = bytearray(base64.b64decode(sealed))
    raw[-1] ^= 1
    with pytest.raises(UndecryptableSecret):
        secretbox.unseal(base64.b64encode(bytes(raw)).decode(), [KEY_A])
    with pytest.raises(UndecryptableSecret):
        secretbox.unseal("not base64!", [KEY_A])


def test_any_configured_key_decrypts_and_the_first_encrypts() -> None:
    sealed_with_old = secretbox.seal("secret", [KEY_A])
    assert secretbox.unseal(sealed_with_old, [KEY_B, KEY_A]) == "secret"
    sealed_with_new = secretbox.seal("secret", [KEY_B, KEY_A])
    with pytest.raises(UndecryptableSecret):
        secretbox.unseal(sealed_with_new, [KEY_A])


@pytest.mark.parametrize(
    ("raw", "problem"),
    [("not-base64!", "not standard base64"), (base64.b64encode(bytes(16)).decode(), "decodes to 16 bytes")],
)
def test_a_malformed_key_is_a_clear_error_that_does_not_echo_it(raw: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as refused:
        settings.parse_key(raw)
    assert "WEBHOOK_ENCRYPTION_KEY" in str(refused.value)
    assert raw not in str(refused.value)
