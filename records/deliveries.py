"""The platform's row per delivery (records.models.Delivery): dispatched, ended, held.

The producer adds the rows at dispatch (one statement a batch) and looks them up to keep
dispatch idempotent; operators end deliveries (cancel, redeliver); a worker parks a held
delivery's message here while its subscriber is disabled or its circuit open, and
``send_parked`` (tasks.holds: the workers, and ``webhooks enable``) gives the parked messages
back to be enqueued again. Workers read the ended ones through tasks.directory.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, exists, func, insert, or_, select, tuple_, update

import settings
from records import database
from records.models import Delivery, Subscriber
from webhooks.clock import utcnow
from webhooks.status import Status


@dataclass(frozen=True)
class New:
    """A delivery about to be enqueued."""

    delivery_id: str
    webhook_id: str
    lead_id: str
    subscriber_id: int
    webhook: str
    redelivery_of: str | None = None


def add(new: Sequence[New], dispatched_at: datetime) -> None:
    """Record deliveries as dispatched (before they are enqueued: one that fails to enqueue
    is then ended as cancelled by the caller, never left looking dispatched)."""
    if not new:
        return
    rows = [{**vars(each), "dispatched_at": dispatched_at} for each in new]
    with database.platform() as session:
        session.execute(insert(Delivery), rows)


def existing(pairs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """For (lead id, subscriber id) pairs already dispatched: the latest delivery's id."""
    wanted = list(dict.fromkeys(pairs))
    found: dict[tuple[str, int], tuple[datetime, str]] = {}
    with database.platform() as session:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = session.execute(
                select(Delivery.lead_id, Delivery.subscriber_id, Delivery.dispatched_at, Delivery.delivery_id).where(
                    tuple_(Delivery.lead_id, Delivery.subscriber_id).in_(chunk)
                )
            )
            for lead_id, subscriber_id, at, delivery_id in rows:
                key = (lead_id, int(subscriber_id or 0))
                if key not in found or found[key][0] <= at:
                    found[key] = (at, delivery_id)
    return {key: delivery_id for key, (_, delivery_id) in found.items()}


def get(delivery_id: str) -> Delivery | None:
    with database.platform() as session:
        return session.get(Delivery, delivery_id)


def of_subscriber(subscriber_id: int, since: datetime | None = None) -> list[Delivery]:
    """The deliveries to one subscriber, oldest first."""
    query = select(Delivery).where(Delivery.subscriber_id == subscriber_id)
    if since is not None:
        query = query.where(Delivery.dispatched_at >= since)
    with database.platform() as session:
        return list(session.scalars(query.order_by(Delivery.dispatched_at, Delivery.delivery_id)))


def end(delivery_id: str, status: Status, reason: str, new: New | None = None) -> Mapping[str, Any] | None:
    """Mark a delivery ended (cancelled or superseded), once; return its parked message if it
    was held (the caller records its end: no message of it is left in the queue). A delivery
    without a row gets one when ``new`` describes it."""
    with database.platform() as session:
        row = session.get(Delivery, delivery_id, with_for_update=True)
        if row is None and new is not None:
            row = Delivery(**vars(new), dispatched_at=utcnow())
            session.add(row)
        if row is None or row.ended_at is not None:
            return None
        parked = row.held_message
        row.ended_at, row.ended_status, row.ended_reason = utcnow(), str(status), reason
        row.held_message = row.held_at = row.held_reason = row.held_queue = None
        return parked


@dataclass(frozen=True)
class Parking:
    """What ``park`` did: parked the message, or not because what held it is gone (``free``), or
    because an operator ended the delivery meanwhile (``ended``: its status and reason)."""

    parked: bool
    ended: tuple[str, str] | None = None

    @property
    def free(self) -> bool:
        return not self.parked and self.ended is None


def park(
    message: Mapping[str, Any], delivery: New, reason: str, queue: str, *, while_circuit_open: bool = False
) -> Parking:
    """Keep a held delivery's (sealed) message, from ``queue``, until its subscriber is enabled
    again, or, with ``while_circuit_open``, until its circuit closes (the workers serving
    ``queue`` send it again then: tasks.holds).

    The subscriber's row is read under a shared lock (parks of one subscriber do not wait for
    each other; ``webhooks delete``, which locks it to delete it, waits for them and then
    finds every message parked): not parked (``free``) when what holds it is gone by now
    (enabled, its circuit closed, deleted). One parked just before the subscriber was enabled
    or its circuit closed is sent again by the workers' next look (tasks.holds). A delivery an
    operator ended meanwhile is not parked (``ended``). A delivery without a row (a message
    built by hand) gets one.
    """
    subscribers, rows = cast(Table, Subscriber.__table__), cast(Table, Delivery.__table__)  # Core: no ORM object
    held = {"held_message": dict(message), "held_at": utcnow(), "held_reason": reason, "held_queue": queue}
    holding: ColumnElement[bool] = subscribers.c.enabled.is_(False)
    if while_circuit_open:
        holding = or_(holding, subscribers.c.circuit_open_until.is_not(None))
    still_held = exists().where(subscribers.c.id == delivery.subscriber_id, holding)
    # The common case in one statement, one round trip (autocommit): its row is there, not ended,
    # and what holds it is still there. InnoDB reads the subscriber's row in the subquery of an
    # UPDATE under a shared lock, held until the UPDATE commits.
    with database.autocommit_engine(settings.DATABASE_URL).connect() as connection:
        done = connection.execute(
            update(rows)
            .where(rows.c.delivery_id == delivery.delivery_id, rows.c.ended_at.is_(None), still_held)
            .values(**held)
        )
    if done.rowcount == 1:
        return Parking(True)
    with database.platform() as session:  # why not: asked in a transaction, as described above
        holds_it = session.execute(
            select(subscribers.c.id)
            .where(subscribers.c.id == delivery.subscriber_id, holding)
            .with_for_update(read=True)
        ).first()
        if holds_it is None:  # what held it is gone (or its subscriber is)
            return Parking(False)
        row = session.execute(
            select(rows.c.ended_at, rows.c.ended_status, rows.c.ended_reason).where(
                rows.c.delivery_id == delivery.delivery_id
            )
        ).one_or_none()
        if row is None:
            session.execute(insert(rows).values(**vars(delivery), dispatched_at=utcnow(), **held))
        elif row.ended_at is not None:
            return Parking(False, (row.ended_status or str(Status.CANCELLED), row.ended_reason or ""))
        else:  # held again since the statement above was sent: park it now
            session.execute(update(rows).where(rows.c.delivery_id == delivery.delivery_id).values(**held))
        return Parking(True)


def parked_counts(queue: str) -> dict[int, int]:
    """Subscriber id -> how many of its deliveries from ``queue`` are parked (one statement,
    answered from the index on (``held_queue``, ``subscriber_id``, ``held_at``) alone: the
    parked entries of that queue only, however many rows the table has). Every worker process
    asks it every few seconds: a plain connection, not an ORM session (0.8 ms of CPU against 3)."""
    query = (
        select(Delivery.subscriber_id, func.count())
        .where(Delivery.held_queue == queue)
        .group_by(Delivery.subscriber_id)
    )
    with database.engine(settings.DATABASE_URL).connect() as connection:
        return {int(subscriber_id): int(count) for subscriber_id, count in connection.execute(query) if subscriber_id}


def takes_deliveries(subscriber_id: int) -> bool:
    """Whether the subscriber exists, is enabled and its circuit closed, as the database says now."""
    with database.platform() as session:
        found = session.execute(
            select(Subscriber.enabled, Subscriber.circuit_open_until).where(Subscriber.id == subscriber_id)
        ).one_or_none()
    return found is not None and bool(found.enabled) and found.circuit_open_until is None


def oldest_parked(subscriber_id: int, queue: str, skip: Collection[str] = ()) -> str | None:
    """The id of the subscriber's delivery from ``queue`` parked the longest, but for those of
    ``skip``, if any."""
    query = (
        select(Delivery.delivery_id)
        .where(Delivery.held_queue == queue, Delivery.subscriber_id == subscriber_id)
        .order_by(Delivery.held_at, Delivery.delivery_id)
        .limit(1)
    )
    if skip:
        query = query.where(Delivery.delivery_id.not_in(list(skip)))
    with database.platform() as session:
        found: str | None = session.execute(query).scalar()
        return found


def send_parked(
    subscriber_id: int,
    send: Callable[[Mapping[str, Any], datetime, str | None], bool],
    *,
    limit: int,
    only: str | None = None,
    skip: Collection[str] = (),
    queue: str | None = None,
) -> tuple[int, list[str]]:
    """Send again up to ``limit`` of the subscriber's parked messages, oldest first (only the
    delivery ``only``, when given; none of ``skip``; only those from ``queue``, when given):
    ``send(message, held_at, queue)`` publishes one (to ``queue``, the one it was taken from),
    or says False (it cannot be read: it stays parked). Returns how many were sent, and the
    ids of those that stay parked because they cannot be read; each one sent is no longer
    parked.

    The rows are locked (by their keys: no range lock that would keep other subscribers'
    deliveries from being parked meanwhile) while their messages are published, and cleared
    in the same transaction: two workers (or a worker and ``webhooks enable``) never send one
    message twice; one killed before the commit leaves them all parked, and the next look
    sends them again (a copy of those already published may then be delivered twice, with
    the same ``webhook-id``). An error from ``send`` (or an interrupt) stops it: the messages
    sent before it are no longer parked, the others stay, and the error is raised.
    """
    query = select(Delivery.delivery_id).where(Delivery.held_at.is_not(None), Delivery.subscriber_id == subscriber_id)
    if only is not None:
        query = query.where(Delivery.delivery_id == only)
    if queue is not None:
        query = query.where(Delivery.held_queue == queue)
    if skip:
        query = query.where(Delivery.delivery_id.not_in(list(skip)))
    failure: BaseException | None = None
    sent, unreadable = 0, []
    with database.platform() as session:
        ids = list(session.scalars(query.order_by(Delivery.held_at, Delivery.delivery_id).limit(limit)))
        if not ids:
            return 0, []
        locked = session.scalars(
            select(Delivery).where(Delivery.delivery_id.in_(ids)).order_by(Delivery.delivery_id).with_for_update()
        ).all()
        # still parked now that they are locked (another worker may have sent them meanwhile)
        rows = sorted(
            (row for row in locked if row.held_message is not None), key=lambda row: (row.held_at, row.delivery_id)
        )
        for row in rows:
            try:
                if not send(dict(row.held_message or {}), row.held_at or utcnow(), row.held_queue):
                    unreadable.append(row.delivery_id)
                    continue
            except BaseException as error:  # the broker, an interrupt: what was sent is no longer parked
                failure = error
                break
            row.held_message = row.held_at = row.held_reason = row.held_queue = None
            sent += 1
    if failure is not None:
        raise failure
    return sent, unreadable


def reseal_held(reseal: Callable[[Mapping[str, Any]], Mapping[str, Any]]) -> int:
    """Authenticate every parked message again (``reseal``: under the first key), in one
    transaction; after a key rotation, before the old key is dropped."""
    with database.platform() as session:
        rows = list(session.scalars(select(Delivery).where(Delivery.held_message.is_not(None))))
        for row in rows:
            row.held_message = dict(reseal(row.held_message or {}))
        return len(rows)


def held(subscriber_id: int | None = None) -> list[Delivery]:
    query = select(Delivery).where(Delivery.held_message.is_not(None))
    if subscriber_id is not None:
        query = query.where(Delivery.subscriber_id == subscriber_id)
    with database.platform() as session:
        return list(session.scalars(query.order_by(Delivery.held_at)))


def not_ended(since: datetime, subscriber_id: int | None = None) -> list[Delivery]:
    """The deliveries dispatched since ``since`` that no operator ended, oldest first."""
    query = select(Delivery).where(Delivery.ended_at.is_(None), Delivery.dispatched_at >= since)
    if subscriber_id is not None:
        query = query.where(Delivery.subscriber_id == subscriber_id)
    with database.platform() as session:
        return list(session.scalars(query.order_by(Delivery.dispatched_at, Delivery.delivery_id)))


def redelivered(delivery_ids: Sequence[str]) -> set[str]:
    """Those of ``delivery_ids`` that a later delivery redelivers."""
    found: set[str] = set()
    with database.platform() as session:
        for start in range(0, len(delivery_ids), 500):
            chunk = list(delivery_ids[start : start + 500])
            found |= set(session.scalars(select(Delivery.redelivery_of).where(Delivery.redelivery_of.in_(chunk))))
    return found
