"""The SSRF guard: which addresses a webhook may reach. Name resolution is stubbed."""

from __future__ import annotations

import pytest

import settings
from tasks import destination
from webhooks.errors import RefusedDestination

REFUSED = [
    "127.0.0.1",  # loopback
    "10.1.2.3",  # RFC 1918
    "172.16.5.4",
    "192.168.1.1",
    "100.64.1.1",  # shared address space
    "100.100.100.200",  # Alibaba Cloud metadata (shared space)
    "169.254.169.254",  # cloud metadata (link-local)
    "0.0.0.0",  # unspecified
    "224.0.0.1",  # multicast
    "240.0.0.1",  # reserved
    "198.18.0.1",  # benchmarking
    "192.0.2.1",  # documentation
    "::1",
    "::",
    "fe80::1",  # link-local
    "fc00::1",  # unique-local
    "fec0::1",  # site-local (deprecated, RFC 3879)
    "feff:ffff::1",
    "fd00:ec2::254",  # AWS metadata over IPv6
    "ff02::1",  # multicast
    "::ffff:10.0.0.1",  # IPv4-mapped private
    "::ffff:169.254.169.254",
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo whose client is 10.0.0.1
]


@pytest.fixture
def no_allowed_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "ALLOWED_NETWORKS", ())


def resolving_to(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> list[str]:
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return list(addresses)

    monkeypatch.setattr(destination, "resolve", resolve)
    return asked


@pytest.mark.usefixtures("no_allowed_networks")
@pytest.mark.parametrize("address", REFUSED)
def test_a_name_resolving_to_a_non_public_address_is_refused(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    resolving_to(monkeypatch, address)
    with pytest.raises(RefusedDestination, match="refused"):
        destination.check("https://partner.example/hooks")


@pytest.mark.usefixtures("no_allowed_networks")
@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "169.254.169.254 is link-local (cloud metadata)"),
        ("fd00:ec2::254", "fd00:ec2::254 is cloud metadata"),
        ("100.100.100.200", "100.100.100.200 is cloud metadata"),
        ("169.254.10.1", "169.254.10.1 is link-local;"),
        ("fe80::1", "fe80::1 is link-local;"),
        ("fec0::1", "fec0::1 is site-local (deprecated);"),
        ("10.1.2.3", "10.1.2.3 is private;"),
        ("::ffff:169.254.169.254", "it embeds 169.254.169.254, and 169.254.169.254 is link-local (cloud metadata)"),
    ],
)
def test_the_refusal_names_what_the_address_is(monkeypatch: pytest.MonkeyPatch, address: str, reason: str) -> None:
    resolving_to(monkeypatch, address)
    with pytest.raises(RefusedDestination) as refused:
        destination.check("https://partner.example/hooks")
    assert reason in str(refused.value)


@pytest.mark.usefixtures("no_allowed_networks")
@pytest.mark.parametrize("address", ["10.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1"])
def test_an_address_literal_in_the_url_is_checked_too(address: str) -> None:
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(RefusedDestination):
        destination.check(f"http://{host}/hooks")


@pytest.mark.usefixtures("no_allowed_networks")
def test_every_address_of_a_name_is_checked_not_only_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    resolving_to(monkeypatch, "93.184.215.14", "10.0.0.7")
    with pytest.raises(RefusedDestination, match=r"10\.0\.0\.7"):
        destination.check("https://partner.example/hooks")


@pytest.mark.usefixtures("no_allowed_networks")
def test_a_public_address_is_accepted_and_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    resolving_to(monkeypatch, "93.184.215.14")
    target = destination.check("https://partner.example:8443/hooks?x=1")
    assert target.address == "93.184.215.14"
    assert target.pinned_url == "https://93.184.215.14:8443/hooks?x=1"
    assert target.host_header == "partner.example:8443"
    assert destination.check("https://partner.example/h").host_header == "partner.example"


def test_an_allowed_network_lets_a_private_address_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "ALLOWED_NETWORKS", (__import__("ipaddress").ip_network("10.0.0.0/8"),))
    resolving_to(monkeypatch, "10.9.9.9")
    assert destination.check("http://internal.example/h").address == "10.9.9.9"
    resolving_to(monkeypatch, "192.168.0.1")
    with pytest.raises(RefusedDestination):
        destination.check("http://internal.example/h")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://partner.example/x", "must be an http:// or https:// URL"),
        ("partner.example/x", "must be an http:// or https:// URL"),
        ("http:///x", "must be an http:// or https:// URL"),
        ("http://user:pw@partner.example/x", "credentials in the URL"),
        ("http://partner.example:99999/x", "not a valid URL"),
        ("http://partner.example/a b", "not a valid URL"),
    ],
)
def test_a_malformed_url_is_refused_before_any_lookup(monkeypatch: pytest.MonkeyPatch, url: str, problem: str) -> None:
    asked = resolving_to(monkeypatch, "93.184.215.14")
    with pytest.raises(RefusedDestination, match=problem):
        destination.check(url)
    assert asked == []
