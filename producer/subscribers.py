"""Subscribers: partners' webhooks, configured from the command line (``webhooks configure``)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from producer.leads import LEAD_TYPES
from records import database
from records.models import Subscriber
from tasks import destination
from webhooks import secretbox
from webhooks.clock import utcnow
from webhooks.errors import InvalidInput, RefusedDestination

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_url(url: str) -> str:
    """An http(s) URL whose host resolves only to addresses webhooks may reach, or InvalidInput."""
    try:
        destination.check(url)
    except (RefusedDestination, LookupError) as error:
        raise InvalidInput(f"--url {error}") from None
    return url


def configure(name: str, url: str, lead_types: Sequence[str], erp_shop_ids: Sequence[str]) -> str:
    """Create a subscriber; return its secret (a UUID4), the only time it is shown in clear."""
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"NAME {name!r} must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    check_url(url)
    if not lead_types:
        raise InvalidInput(f"at least one --lead-type is required; allowed values: {', '.join(LEAD_TYPES)}")
    for lead_type in lead_types:
        if lead_type not in LEAD_TYPES:
            raise InvalidInput(f"--lead-type {lead_type!r} is not allowed; allowed values: {', '.join(LEAD_TYPES)}")
    shop_ids = [shop.strip() for shop in erp_shop_ids]
    if not shop_ids or not all(shop_ids):
        raise InvalidInput("at least one non-empty --erp-shop-id is required")
    secret = str(uuid.uuid4())
    with database.platform() as session:
        if session.scalar(select(Subscriber.id).where(Subscriber.name == name)) is not None:
            raise InvalidInput(f"a subscriber named {name!r} already exists")
        session.add(
            Subscriber(
                name=name,
                url=url,
                lead_types=list(dict.fromkeys(lead_types)),
                erp_shop_ids=list(dict.fromkeys(shop_ids)),
                sealed_secret=secretbox.seal(secret),
                enabled=True,
                created_at=utcnow(),
            )
        )
    return secret


def all_subscribers() -> list[Subscriber]:
    with database.platform() as session:
        return list(session.scalars(select(Subscriber).order_by(Subscriber.name)))


def matching(lead: Mapping[str, Any], subscribers: Sequence[Subscriber]) -> list[Subscriber]:
    """The enabled subscribers that want this lead: its type and its ERP shop id both match."""
    return [
        subscriber
        for subscriber in subscribers
        if subscriber.enabled
        and lead["lead_type"] in subscriber.lead_types
        and lead["geolid_shop_id"] in subscriber.erp_shop_ids
    ]


def reencrypt() -> int:
    """Seal every stored secret again under the first key (after a key rotation); one transaction."""
    with database.platform() as session:
        found = list(session.scalars(select(Subscriber)))
        for subscriber in found:
            subscriber.sealed_secret = secretbox.seal(secretbox.unseal(subscriber.sealed_secret))
            if subscriber.previous_sealed_secret:
                subscriber.previous_sealed_secret = secretbox.seal(secretbox.unseal(subscriber.previous_sealed_secret))
    return len(found)


def set_enabled(name: str, enabled: bool) -> None:
    """Enable or disable a subscriber; a disabled one gets no new deliveries."""
    with database.platform() as session:
        _named(session, name).enabled = enabled


def rotate_secret(name: str, grace_seconds: int) -> tuple[str, datetime]:
    """Give NAME a new secret; the old one still signs beside it until the returned time."""
    secret = str(uuid.uuid4())
    until = utcnow() + timedelta(seconds=grace_seconds)
    with database.platform() as session:
        subscriber = _named(session, name)
        subscriber.previous_sealed_secret = subscriber.sealed_secret
        subscriber.previous_secret_until = until
        subscriber.sealed_secret = secretbox.seal(secret)
    return secret, until


def named(name: str) -> Subscriber:
    with database.platform() as session:
        return _named(session, name)


def _named(session: Session, name: str) -> Subscriber:
    subscriber = session.scalar(select(Subscriber).where(Subscriber.name == name))
    if subscriber is None:
        raise InvalidInput(f"no subscriber is named {name!r} (see: webhooks list)")
    return subscriber
