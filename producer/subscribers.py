"""Subscribers: partners' webhooks, configured from the command line (``webhooks configure``)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy import update as update_rows
from sqlalchemy.orm import Session

from producer.leads import LEAD_TYPES
from records import database
from records.models import Delivery, Subscriber
from tasks import destination
from webhooks import secretbox
from webhooks.clock import utcnow
from webhooks.errors import InvalidInput, RefusedDestination, UndecryptableSecret, UnresolvedName

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_url(url: str) -> str:
    """An http(s) URL whose host resolves only to addresses webhooks may reach, or InvalidInput."""
    try:
        destination.check(url)
    except (RefusedDestination, UnresolvedName) as error:
        raise InvalidInput(f"--url {error}") from None
    return url


def check_lead_types(lead_types: Sequence[str]) -> list[str]:
    if not lead_types:
        raise InvalidInput(f"at least one --lead-type is required; allowed values: {', '.join(LEAD_TYPES)}")
    for lead_type in lead_types:
        if lead_type not in LEAD_TYPES:
            raise InvalidInput(f"--lead-type {lead_type!r} is not allowed; allowed values: {', '.join(LEAD_TYPES)}")
    return list(dict.fromkeys(lead_types))


def check_shop_ids(erp_shop_ids: Sequence[str]) -> list[str]:
    shop_ids = [shop.strip() for shop in erp_shop_ids]
    if not shop_ids or not all(shop_ids):
        raise InvalidInput("at least one non-empty --erp-shop-id is required")
    return list(dict.fromkeys(shop_ids))


def configure(name: str, url: str, lead_types: Sequence[str], erp_shop_ids: Sequence[str]) -> str:
    """Create a subscriber; return its secret (a UUID4), the only time it is shown in clear."""
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"NAME {name!r} must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    check_url(url)
    types, shop_ids = check_lead_types(lead_types), check_shop_ids(erp_shop_ids)
    secret = str(uuid.uuid4())
    with database.platform() as session:
        if session.scalar(select(Subscriber.id).where(Subscriber.name == name)) is not None:
            raise InvalidInput(f"a subscriber named {name!r} already exists")
        session.add(
            Subscriber(
                name=name,
                url=url,
                lead_types=types,
                erp_shop_ids=shop_ids,
                sealed_secret=secretbox.seal(secret),
                enabled=True,
                created_at=utcnow(),
            )
        )
    return secret


def all_subscribers() -> list[Subscriber]:
    with database.platform() as session:
        return list(session.scalars(select(Subscriber).order_by(Subscriber.name)))


def update(
    name: str, url: str | None = None, lead_types: Sequence[str] = (), erp_shop_ids: Sequence[str] = ()
) -> Subscriber:
    """Change what is given of NAME (validated like ``configure``); every later attempt,
    retries included, follows the change (within SUBSCRIBER_CACHE_SECONDS)."""
    if url is None and not lead_types and not erp_shop_ids:
        raise InvalidInput("nothing to change: give --url, --lead-type or --erp-shop-id")
    if url is not None:
        check_url(url)
    types = check_lead_types(lead_types) if lead_types else None
    shop_ids = check_shop_ids(erp_shop_ids) if erp_shop_ids else None
    with database.platform() as session:
        subscriber = _named(session, name)
        if url is not None:
            subscriber.url = url
        if types is not None:
            subscriber.lead_types = types
        if shop_ids is not None:
            subscriber.erp_shop_ids = shop_ids
        return subscriber


def delete(name: str) -> tuple[int, list[dict[str, Any]]]:
    """Delete NAME. Its pending deliveries end ``cancelled`` (the queued ones when a worker
    meets them, the held ones now: their parked messages are returned to be recorded). The
    audit keeps every record of it. Returns its id and the parked messages."""
    with database.platform() as session:
        subscriber = _named(session, name)
        subscriber_id = subscriber.id
        # locked first: a worker parking one of its deliveries (under a shared lock on this row,
        # records.deliveries.park) has committed before the parked messages are read, and none
        # parks after; read as they are now (a locking read), not as this transaction began
        session.execute(select(Subscriber.id).where(Subscriber.id == subscriber_id).with_for_update())
        parked = [
            dict(row.held_message)
            for row in session.scalars(
                select(Delivery)
                .where(Delivery.subscriber_id == subscriber_id, Delivery.held_message.is_not(None))
                .with_for_update()
            )
            if row.held_message
        ]
        session.execute(
            update_rows(Delivery)
            .where(Delivery.subscriber_id == subscriber_id, Delivery.ended_at.is_(None))
            .values(
                ended_at=utcnow(),
                ended_status="cancelled",
                ended_reason=f"its subscriber {name} was deleted",
                held_message=None,
                held_at=None,
                held_reason=None,
                held_queue=None,
            )
        )
        session.delete(subscriber)
    return subscriber_id, parked


def matching(
    lead: Mapping[str, Any], subscribers: Sequence[Subscriber], *, enabled_only: bool = True
) -> list[Subscriber]:
    """The subscribers (enabled ones only, by default) that want this lead: its type and its
    ERP shop id both match."""
    return [
        subscriber
        for subscriber in subscribers
        if (subscriber.enabled or not enabled_only)
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


def set_enabled(name: str, enabled: bool, reason: str | None = None) -> Subscriber:
    """Enable or disable a subscriber. A disabled one gets no new deliveries, and its pending
    ones are held when their attempt comes (see producer.lifecycle.enable, which sends them)."""
    with database.platform() as session:
        subscriber = _named(session, name)
        subscriber.enabled = enabled
        subscriber.disabled_reason = None if enabled else (reason or "disabled by an operator (webhooks disable)")
        subscriber.disabled_at = None if enabled else utcnow()
        return subscriber


def rotate_secret(name: str, grace_seconds: int) -> tuple[str, datetime]:
    """Give NAME a new secret; the old one still signs beside it until the returned time.

    Refused, with nothing changed, when the current secret does not open under the
    configured key: rotating then would leave the subscriber with a secret no worker can use
    beside one it never knew (a wrong WEBHOOK_ENCRYPTION_KEY, most likely)."""
    secret = str(uuid.uuid4())
    until = utcnow() + timedelta(seconds=grace_seconds)
    with database.platform() as session:
        subscriber = _named(session, name)
        try:
            secretbox.unseal(subscriber.sealed_secret)
        except UndecryptableSecret:
            raise InvalidInput(
                f"the current secret of {name!r} does not decrypt with WEBHOOK_ENCRYPTION_KEY"
                " (is it the workers' key?): nothing was changed"
            ) from None
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
