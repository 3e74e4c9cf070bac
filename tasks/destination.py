"""Where a webhook may be sent: SSRF protection, checked at configure time and at send time.

A subscriber URL is http or https with a host. The host is resolved and *every* address
checked; an address that is not public (loopback, private, shared, link-local, site-local,
unique-local, multicast, unspecified, reserved, cloud metadata, or an IPv4-mapped, 6to4,
Teredo or NAT64 form of one of these) is refused unless it lies inside
``WEBHOOK_ALLOWED_NETWORKS``. The sender then connects to the checked address itself,
never resolving the name again, so DNS rebinding cannot slip a private address in.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import settings
from webhooks.errors import RefusedDestination, UnresolvedName
from webhooks.text import without_passwords

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Not covered by ipaddress's is_global on every Python: spelled out.
_ALWAYS_REFUSED = [
    ipaddress.ip_network(network)
    for network in (
        "100.64.0.0/10",  # shared address space (carrier-grade NAT; Alibaba's metadata 100.100.100.200)
        "169.254.0.0/16",  # link-local (AWS, GCP, Azure metadata 169.254.169.254)
        "fd00:ec2::/32",  # AWS metadata over IPv6 (inside fc00::/7)
        "192.0.0.0/24",  # IETF protocol assignments
        "198.18.0.0/15",  # benchmarking
    )
]
# Cloud metadata services, named as such in a refusal (each is also inside a refused range).
_METADATA = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack… (link-local)
        "169.254.170.2",  # AWS ECS task metadata (link-local)
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud (shared address space)
    )
)
# What an address is, most specific first (169.254/16 and fe80::/10 also count as private).
_KINDS = (
    ("loopback", "loopback"),
    ("link_local", "link-local"),
    ("site_local", "site-local (deprecated)"),  # fec0::/10, IPv6 only: not covered by is_private
    ("private", "private"),
    ("multicast", "multicast"),
    ("unspecified", "unspecified"),
    ("reserved", "reserved"),
)


@dataclass(frozen=True)
class Destination:
    """A URL whose host has been resolved to one checked address."""

    url: str
    scheme: str
    host: str  # the name, for the Host header and TLS server name
    port: int
    address: str  # the checked IP the connection goes to

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"

    @property
    def pinned_url(self) -> str:
        """The URL with its host replaced by the checked address."""
        parts = urlsplit(self.url)
        address = f"[{self.address}]" if ":" in self.address else self.address
        return parts._replace(netloc=f"{address}:{self.port}").geturl()


def parse(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an absolute http(s) URL with a host, or RefusedDestination."""
    shown = without_passwords(url)  # in messages: a password in the URL is never echoed
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise RefusedDestination(f"{shown!r} is not a valid URL") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise RefusedDestination(f"{shown!r} must be an http:// or https:// URL with a host")
    if port == 0 or len(url) > 2048 or any(char.isspace() or ord(char) < 32 for char in url):
        raise RefusedDestination(f"{shown!r} is not a valid URL")
    if parts.username is not None or parts.password is not None:
        raise RefusedDestination(f"{shown!r}: credentials in the URL are not allowed")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def resolve(host: str, port: int) -> list[str]:
    """Every address of ``host`` (the one place names are resolved; tests stub it)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnresolvedName(f"cannot resolve {host!r}: {error}") from None
    return list(dict.fromkeys(str(entry[4][0]) for entry in found))


def why_refused(address: IPAddress) -> str | None:
    """The reason ``address`` may not receive a webhook, or None when it is public."""
    if any(address in network for network in settings.ALLOWED_NETWORKS):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = why_refused(embedded)
            return f"it embeds {embedded}, and {reason}" if reason else None
    kind = next((name for attribute, name in _KINDS if getattr(address, f"is_{attribute}", False)), None)
    if address in _METADATA:
        return f"{address} is " + ("link-local (cloud metadata)" if kind == "link-local" else "cloud metadata")
    if kind is not None:
        return f"{address} is {kind}"
    if any(address in network for network in _ALWAYS_REFUSED if network.version == address.version):
        return f"{address} is in a special-purpose range"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if address.teredo:
        return address.teredo[1]
    if address in ipaddress.ip_network("64:ff9b::/96"):  # NAT64
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def check(url: str) -> Destination:
    """Resolve the URL's host and check every address; RefusedDestination names the reason."""
    scheme, host, port = parse(url)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    addresses = [str(literal)] if literal else resolve(host, port)
    if not addresses:
        raise UnresolvedName(f"{host!r} has no address")
    for address in addresses:
        reason = why_refused(ipaddress.ip_address(address))
        if reason:
            raise RefusedDestination(
                f"{url!r} resolves to {address}: {reason}; refused (allowed networks: WEBHOOK_ALLOWED_NETWORKS="
                f"{','.join(str(network) for network in settings.ALLOWED_NETWORKS) or 'none'})"
            )
    return Destination(url=url, scheme=scheme, host=host, port=port, address=addresses[0])
