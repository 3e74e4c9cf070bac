"""Flower never listens beyond loopback without authentication.

Flower's API can revoke tasks and shut workers down, and its pages show every task. Loaded by
``flowerconfig.py`` (``celery -A tasks flower --conf=flowerconfig.py``, as the Procfile and
docker-compose.yml run it), ``install`` checks Flower's final options — from ``FLOWER_*``
variables, the configuration file and the command line, as Flower itself resolves them — before
Flower binds its port: on an address other than loopback, it needs ``FLOWER_BASIC_AUTH``
(``user:password``, each entry with a password) or ``FLOWER_AUTH`` (OAuth2), or it exits with
a message naming them.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Sequence


def refusal(address: str, unix_socket: str, basic_auth: Sequence[str] | None, auth: str) -> str | None:
    """Why Flower must not start with these options, or None."""
    if unix_socket:
        return None  # a file, not a network address
    if basic_auth and any(not entry.partition(":")[0] or not entry.partition(":")[2] for entry in basic_auth):
        return "FLOWER_BASIC_AUTH (--basic-auth) must be user:password, each entry with a user and a password"
    if basic_auth or auth or _loopback(address):
        return None
    where = f"on {address}" if address else "on every interface (no --address)"
    return (
        f"Flower refuses to listen {where} without authentication (its API can revoke tasks and shut "
        "workers down): set FLOWER_BASIC_AUTH=user:password (or --basic-auth=user:password), or "
        "FLOWER_AUTH with an OAuth2 provider, or listen on loopback only (--address=127.0.0.1)"
    )


def _loopback(address: str) -> bool:
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False  # '' (every interface) or a name: maybe reachable from elsewhere


def check() -> None:
    """Exit with the refusal, if any, of Flower's options as parsed."""
    from tornado.options import options

    refused = refusal(options.address or "", options.unix_socket or "", options.basic_auth, options.auth or "")
    if refused:
        sys.exit(f"Error: {refused}")


def install() -> None:
    """Check Flower's options once it has parsed them all (the command line is parsed last)."""
    from tornado.options import options

    options.add_parse_callback(check)
