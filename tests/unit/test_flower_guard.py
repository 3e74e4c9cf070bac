"""Which Flower options webhooks.flower_guard refuses (Flower itself is started in
tests/integration/test_flower_guard.py)."""

from __future__ import annotations

import pytest

from webhooks.flower_guard import refusal


@pytest.mark.parametrize("address", ["", "0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "flower.example", "[::]"])
def test_an_address_beyond_loopback_without_authentication_is_refused(address: str) -> None:
    refused = refusal(address, "", None, "")
    assert refused is not None and "FLOWER_BASIC_AUTH" in refused


@pytest.mark.parametrize("address", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_needs_no_authentication(address: str) -> None:
    assert refusal(address, "", None, "") is None


@pytest.mark.parametrize(
    ("basic_auth", "auth"), [(["admin:a-long-password"], ""), (["a:b", "c:d"], ""), (None, ".*@example\\.com")]
)
def test_authentication_lets_flower_listen_everywhere(basic_auth: list[str] | None, auth: str) -> None:
    assert refusal("0.0.0.0", "", basic_auth, auth) is None


@pytest.mark.parametrize("entry", ["admin:", ":password", "admin", ""])
def test_a_basic_auth_entry_without_a_user_or_a_password_is_refused_even_on_loopback(entry: str) -> None:
    refused = refusal("127.0.0.1", "", ["admin:ok", entry], "")
    assert refused is not None and "FLOWER_BASIC_AUTH" in refused


def test_a_unix_socket_is_not_a_network_address() -> None:
    assert refusal("", "/run/flower.sock", None, "") is None
