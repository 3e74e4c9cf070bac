"""Delivery history: what the audit database says about past attempts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from records import database, deliveries
from records.models import DeliveryAttempt
from webhooks.clock import utcnow
from webhooks.status import Status

STATUSES = tuple(str(status) for status in Status)


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


def last_records(delivery_ids: list[str]) -> dict[str, DeliveryAttempt]:
    """The newest audit record of each delivery that has one."""
    found: dict[str, DeliveryAttempt] = {}
    with database.audit() as session:
        for start in range(0, len(delivery_ids), 500):
            chunk = delivery_ids[start : start + 500]
            query = (
                select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id.in_(chunk), DeliveryAttempt.status != Status.REFUSED)
                .order_by(DeliveryAttempt.id)
            )
            for row in session.scalars(query):
                found[row.delivery_id] = row
    return found


def ever_succeeded(delivery_id: str) -> bool:
    with database.audit() as session:
        found = session.scalar(
            select(DeliveryAttempt.id)
            .where(DeliveryAttempt.delivery_id == delivery_id, DeliveryAttempt.status == Status.SUCCESS)
            .limit(1)
        )
    return found is not None


def last_status(delivery_id: str) -> str | None:
    """The status of the delivery's newest audit record (None: not attempted yet)."""
    last = last_records([delivery_id]).get(delivery_id)
    return None if last is None else last.status


# How far back `deliveries --pending` looks for deliveries dispatched and not ended.
PENDING_HORIZON = timedelta(days=30)


@dataclass(frozen=True)
class Pending:
    """A delivery still to be attempted, or held."""

    delivery_id: str
    lead_id: str
    webhook: str
    dispatched_at: datetime
    state: str  # queued (not attempted yet) | error (a retry is due) | held
    retry: int  # attempts made
    next_attempt: str  # when, or what lets it go
    reason: str | None

    def summary(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "lead_id": self.lead_id,
            "webhook": self.webhook,
            "dispatched_at": self.dispatched_at.isoformat() + "+00:00",
            "state": self.state,
            "retry": self.retry,
            "next_attempt": self.next_attempt,
            "reason": self.reason,
        }


def pending(subscriber_id: int | None = None, limit: int = 100) -> list[Pending]:
    """Deliveries dispatched in the last PENDING_HORIZON that are neither done nor ended,
    oldest first: queued (no attempt yet), failed with a retry due, or held."""
    rows = [
        row
        for row in deliveries.not_ended(utcnow() - PENDING_HORIZON, subscriber_id)
        if row.subscriber_id is not None or subscriber_id is None
    ]
    last = last_records([row.delivery_id for row in rows])
    found: list[Pending] = []
    for row in rows:
        record = last.get(row.delivery_id)
        if record is not None and Status(record.status).final:
            continue
        if row.held_message is not None:  # parked: its subscriber disabled, or its circuit open (tasks.holds)
            by_circuit = (row.held_reason or "").startswith("held: its circuit")  # tasks.delivery.hold
            when = "once a probe closes its circuit" if by_circuit else "on webhooks enable"
            state, retry, reason = "held", record.retry if record else 0, row.held_reason
        elif record is None:
            state, retry, when, reason = "queued", 0, "now (waiting for a worker)", None
        elif record.status == Status.HELD:  # back in the queue: the in-flight limit, or sent again since
            state, retry, when, reason = (
                "held",
                record.retry,
                "when its hold ends (it waits in the queue)",
                record.error,
            )
        else:
            state, retry = "error", record.retry + 1
            when = record.next_retry_at.isoformat() + "+00:00" if record.next_retry_at else "now"
            reason = record.error
        found.append(Pending(row.delivery_id, row.lead_id, row.webhook, row.dispatched_at, state, retry, when, reason))
        if len(found) >= limit:
            break
    return found
