"""Delivery history: what the audit database says about past attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from records import database
from records.models import DeliveryAttempt

STATUSES = ("success", "error", "abandoned")


def attempts(
    *,
    webhook: str | None = None,
    lead_id: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[DeliveryAttempt]:
    """Attempts, newest first, filtered by subscriber, lead, status and time (naive UTC)."""
    query = select(DeliveryAttempt)
    if webhook is not None:
        query = query.where(DeliveryAttempt.webhook == webhook)
    if lead_id is not None:
        query = query.where(DeliveryAttempt.lead_id == lead_id)
    if status is not None:
        query = query.where(DeliveryAttempt.status == status)
    if since is not None:
        query = query.where(DeliveryAttempt.attempted_at >= since)
    query = query.order_by(DeliveryAttempt.attempted_at.desc(), DeliveryAttempt.id.desc()).limit(limit)
    with database.audit() as session:
        return list(session.scalars(query))


def of_delivery(delivery_id: str) -> list[DeliveryAttempt]:
    """Every attempt of one delivery, oldest first."""
    with database.audit() as session:
        return list(
            session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id == delivery_id)
                .order_by(DeliveryAttempt.attempted_at, DeliveryAttempt.id)
            )
        )
