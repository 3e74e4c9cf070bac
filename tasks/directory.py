"""The worker's view of the subscribers and of the deliveries an operator ended, from a
per-process cache over the platform database.

Each attempt follows its subscriber's current state (URL, secrets, enabled or not, deleted
or not), read here, never from the message. The cache is shared by a worker's threads and
loaded whole — every subscriber, and the deliveries ended in the last ``ENDED_HORIZON`` — in
two statements, at most once every ``SUBSCRIBER_CACHE_SECONDS``: no round trip per delivery.
So a change made with the CLI reaches every worker within that bound (5 s by default).
A subscriber the snapshot does not know is deleted only if the snapshot was loaded after
the message was issued (``SKEW`` allowed between the clocks): otherwise it loads again at
once (the subscriber may be newer than the snapshot).

While the database cannot be read, the last snapshot serves (a warning says so): a worker
keeps delivering with what it knew rather than stopping.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.exc import SQLAlchemyError

import settings
from records import database
from records.models import Delivery, Subscriber
from tasks import circuit
from tasks.circuit import Circuit
from webhooks.clock import utcnow

log = logging.getLogger("webhooks.directory")

# Deliveries ended by an operator within this window are known to every worker (their messages
# are dropped on arrival); a message lives at most the retry schedule plus its holds in SQS.
ENDED_HORIZON = timedelta(days=30)
# How far the producer's clock may run ahead of a worker's, for telling a subscriber created
# after a snapshot from one deleted.
SKEW = timedelta(seconds=5)


class NotKnownYet(Exception):
    """A subscriber missing from a snapshot that may be older than it: ask again later."""


@dataclass(frozen=True)
class SubscriberState:
    """What an attempt needs of its subscriber, as the database said at ``loaded``."""

    id: int
    name: str
    url: str
    sealed_secret: str
    previous_sealed_secret: str | None
    previous_secret_until: datetime | None
    enabled: bool
    disabled_reason: str | None
    circuit: Circuit = field(default_factory=Circuit)

    def sealed_secrets(self, now: datetime) -> list[str]:
        """The sealed secrets that sign an attempt made now: the current one, and the previous
        one during its grace period (after ``webhooks rotate-secret``)."""
        if self.previous_sealed_secret and self.previous_secret_until and now < self.previous_secret_until:
            return [self.sealed_secret, self.previous_sealed_secret]
        return [self.sealed_secret]


@dataclass(frozen=True)
class Ended:
    """A delivery an operator (or a redelivery) ended: its message is dropped on arrival."""

    status: str  # cancelled | superseded
    reason: str


@dataclass(frozen=True)
class Snapshot:
    by_id: dict[int, SubscriberState]
    by_name: dict[str, SubscriberState]
    ended: dict[str, Ended]
    loaded: float  # time.monotonic() of the load
    loaded_at: datetime  # the same moment by the project's clock


_subscribers = cast(Table, Subscriber.__table__)
_deliveries = cast(Table, Delivery.__table__)


def load() -> Snapshot:
    """Read every subscriber and the recently ended deliveries (two statements)."""
    started, started_at = time.monotonic(), utcnow()
    with database.engine(settings.DATABASE_URL).connect() as connection:
        rows = connection.execute(
            select(
                _subscribers.c.id,
                _subscribers.c.name,
                _subscribers.c.url,
                _subscribers.c.sealed_secret,
                _subscribers.c.previous_sealed_secret,
                _subscribers.c.previous_secret_until,
                _subscribers.c.enabled,
                _subscribers.c.disabled_reason,
                _subscribers.c.circuit_open_until,
                _subscribers.c.circuit_cooldown,
                _subscribers.c.circuit_closed_at,
                _subscribers.c.circuit_probe_until,
            )
        ).all()
        ended = connection.execute(
            select(_deliveries.c.delivery_id, _deliveries.c.ended_status, _deliveries.c.ended_reason).where(
                _deliveries.c.ended_at >= utcnow() - ENDED_HORIZON
            )
        ).all()
    states = [SubscriberState(*row[:8], circuit=Circuit(*row[8:])) for row in rows]
    if settings.WEBHOOK_CIRCUIT_BREAKER:
        states = trip_circuits(states)
    return Snapshot(
        by_id={state.id: state for state in states},
        by_name={state.name: state for state in states},
        ended={row.delivery_id: Ended(row.ended_status or "cancelled", row.ended_reason or "") for row in ended},
        loaded=started,
        loaded_at=started_at,
    )


def trip_circuits(states: list[SubscriberState]) -> list[SubscriberState]:
    """Open the circuit of every subscriber whose recent attempts, fleet-wide, trip it (one
    grouped statement over the audit; a conditional UPDATE for each one that trips)."""
    closed = {state.name: state.circuit.closed_at for state in states if state.enabled and not state.circuit.open}
    if not closed:
        return states
    try:
        outcomes = circuit.recent_outcomes(utcnow() - timedelta(seconds=settings.WEBHOOK_CIRCUIT_WINDOW), closed)
    except SQLAlchemyError as error:  # the audit database: circuits are judged at the next load
        log.warning("recent outcomes could not be read, circuits not judged: %s", _short(error))
        return states
    judged = []
    for state in states:
        seen = outcomes.get(state.name)
        if state.name in closed and seen is not None and seen.trip():
            opened = circuit.open_if_closed(state.id, state.name, seen)
            if opened is not None:
                until, cooldown = opened
                state = replace(state, circuit=Circuit(until, cooldown, state.circuit.closed_at))
        judged.append(state)
    return judged


class Directory:
    """The per-process cache (module-level ``directory``); thread-safe, one loader at a time."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()

    def snapshot(self, *, older_than: float | None = None) -> Snapshot:
        """The cached snapshot, loaded again when older than ``older_than`` (default: the
        cache's bound). One thread loads; the others wait for it (a few milliseconds, once per
        bound) rather than act on a snapshot older than the bound; while the database cannot be
        read, the last snapshot serves."""
        limit = self.max_age if older_than is None else older_than
        current = self._snapshot
        if current is not None and time.monotonic() - current.loaded < limit:
            return current
        with self._lock:
            current = self._snapshot  # loaded by the thread this one waited for, most often
            if current is None or time.monotonic() - current.loaded >= limit:
                try:
                    self._snapshot = current = load()
                except SQLAlchemyError as error:
                    if current is None:
                        raise
                    log.warning("subscribers could not be read, the last known state serves: %s", _short(error))
                    # served for another bound before the next try: the threads waiting do not each
                    # wait for the database in turn
                    self._snapshot = current = replace(current, loaded=time.monotonic())
            return current

    def subscriber(self, subscriber_id: int, name: str, issued_at: datetime | None) -> SubscriberState | None:
        """The subscriber's current state, or None when it no longer exists (deleted).
        ``subscriber_id`` 0 (a message of the earlier form) finds it by name. A message
        ``issued_at`` a time the snapshot does not cover makes it load again first."""
        snapshot = self.snapshot()
        state = self._find(snapshot, subscriber_id, name)
        if state is None and not self._covers(snapshot, issued_at):
            snapshot = self._load_covering(issued_at)
            state = self._find(snapshot, subscriber_id, name)
            if state is None and not self._covers(snapshot, issued_at):
                raise NotKnownYet(f"subscriber {subscriber_id} ({name}) is not known yet")
        return state

    @staticmethod
    def _covers(snapshot: Snapshot, issued_at: datetime | None) -> bool:
        """Whether the snapshot was loaded after the message was issued (a message of the earlier
        form, without ``issued_at``, predates every snapshot: any covers it)."""
        return issued_at is None or snapshot.loaded_at > issued_at + SKEW

    def _load_covering(self, issued_at: datetime | None) -> Snapshot:
        """A snapshot loaded now, unless one loaded after ``issued_at`` (+ SKEW) is there
        (the one another thread was loading); SQLAlchemyError when the database cannot say."""
        with self._lock:
            current = self._snapshot
            if current is not None and self._covers(current, issued_at):
                return current
            self._snapshot = current = load()
            return current

    def ended(self, delivery_id: str) -> Ended | None:
        return self.snapshot().ended.get(delivery_id)

    def forget(self) -> None:
        """Drop the snapshot: the next look loads (tests, and a worker that changed the state itself)."""
        self._snapshot = None

    @staticmethod
    def _find(snapshot: Snapshot, subscriber_id: int, name: str) -> SubscriberState | None:
        """The subscriber the message names: its id and its name must both match (a database that
        reuses the id of a deleted row, as SQLite does, never hands its leads to a newcomer)."""
        state = snapshot.by_id.get(subscriber_id) if subscriber_id else snapshot.by_name.get(name)
        return state if state is not None and state.name == name else None


def _short(error: BaseException) -> str:
    return str(error).splitlines()[0][:200]


directory = Directory(settings.SUBSCRIBER_CACHE_SECONDS)
