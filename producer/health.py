"""Subscriber health at a glance (``webhooks health``).

Per subscriber: enabled or disabled (and why), its circuit (closed, open until when, probe due
or under way), its attempts and their success rate over the last hour and the last day, the
median and 95th percentile of their durations (nearest rank: a duration that occurred), its
last success, its failures since then, and its pending deliveries (as ``webhooks deliveries
--pending`` counts them: dispatched in the last 30 days, neither ended nor done).

Every question is answered from an index, never by reading the whole audit: the cost grows with
a subscriber's attempts of the last day (their durations are read, for exact percentiles), with
its failures since its last success (counted up to ``FAILURES_COUNTED``) and with the
deliveries dispatched in the pending horizon, not with the audit's size (bench/health.py
measures it on 1,000,000 records; migration 0007 adds the index it needs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, exists, func, literal, select

import settings
from producer import history, subscribers
from records import database
from records.models import Delivery, DeliveryAttempt, Subscriber
from webhooks.clock import utcnow
from webhooks.status import FINAL, Status

_attempts = cast(Table, DeliveryAttempt.__table__)
_deliveries = cast(Table, Delivery.__table__)

#: What an attempt's outcome can be (held, cancelled… records are not attempts), and a failure's.
ATTEMPTED = (Status.SUCCESS, Status.ERROR, Status.ABANDONED)
FAILED = (Status.ERROR, Status.ABANDONED)
#: Failures since the last success are counted up to this many (more: "at least" that many).
FAILURES_COUNTED = 100_000
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


@dataclass(frozen=True)
class Window:
    """The attempts of a subscriber over a time window."""

    attempts: int
    succeeded: int
    median_ms: float | None  # None without attempts
    p95_ms: float | None

    @classmethod
    def of(cls, outcomes: Sequence[tuple[bool, float]]) -> Window:
        """From (succeeded, duration in ms) of each attempt."""
        durations = sorted(duration for _, duration in outcomes)
        return cls(
            attempts=len(outcomes),
            succeeded=sum(1 for succeeded, _ in outcomes if succeeded),
            median_ms=nearest_rank(durations, 0.5),
            p95_ms=nearest_rank(durations, 0.95),
        )

    @property
    def success_rate(self) -> float | None:
        """Percent of the attempts that succeeded (None without attempts)."""
        return round(100 * self.succeeded / self.attempts, 1) if self.attempts else None

    def summary(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "succeeded": self.succeeded,
            "success_rate": self.success_rate,
            "duration_ms": {"median": _ms(self.median_ms), "p95": _ms(self.p95_ms)},
        }

    def text(self) -> str:
        if not self.attempts:
            return "no attempts"
        return (
            f"{self.attempts} attempts, {self.success_rate:.1f} % succeeded; duration median "
            f"{_ms(self.median_ms):g} ms, 95th percentile {_ms(self.p95_ms):g} ms"
        )


def nearest_rank(ordered: Sequence[float], share: float) -> float | None:
    """The ``share`` percentile of sorted values, by nearest rank (None when there are none)."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass(frozen=True)
class Health:
    """One subscriber's health."""

    name: str
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    circuit: str  # closed | open | probe due | probe under way
    circuit_until: datetime | None  # open until, or the probe's deadline
    last_hour: Window
    last_day: Window
    last_success: datetime | None
    consecutive_failures: int  # failed attempts since the last success (all of them without one)
    pending: int

    @property
    def failures_shown(self) -> str:
        return (
            f"at least {FAILURES_COUNTED}"
            if self.consecutive_failures >= FAILURES_COUNTED
            else str(self.consecutive_failures)
        )

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "disabled_at": _iso(self.disabled_at),
            "circuit": self.circuit,
            "circuit_until": _iso(self.circuit_until),
            "last_hour": self.last_hour.summary(),
            "last_day": self.last_day.summary(),
            "last_success": _iso(self.last_success),
            "consecutive_failures": self.consecutive_failures,
            "consecutive_failures_capped": self.consecutive_failures >= FAILURES_COUNTED,
            "pending": self.pending,
        }

    def text(self) -> str:
        state = "enabled" if self.enabled else f"DISABLED since {_iso(self.disabled_at)}: {self.disabled_reason}"
        circuit = f"circuit {self.circuit}" + (f" until {_iso(self.circuit_until)}" if self.circuit_until else "")
        if self.last_success:
            failures = f"last success {_iso(self.last_success)}; {self.failures_shown} failed attempts since"
        else:
            failures = f"no success recorded; {self.failures_shown} failed attempts"
        return (
            f"{self.name}: {state}; {circuit}\n"
            f"  last hour: {self.last_hour.text()}\n"
            f"  last day:  {self.last_day.text()}\n"
            f"  {failures}; {self.pending} pending deliveries"
        )


def report(name: str | None = None, now: datetime | None = None) -> list[Health]:
    """The health of the subscriber ``name`` (InvalidInput when there is none), or of every one."""
    moment = now or utcnow()
    chosen = [subscribers.named(name)] if name is not None else subscribers.all_subscribers()
    waiting = pending(chosen, moment)
    found = []
    with database.autocommit_engine(settings.AUDIT_DATABASE_URL).connect() as connection:
        for subscriber in chosen:
            hour, day = windows(connection, subscriber.name, moment)
            last = last_success(connection, subscriber.name)
            state, until = circuit(subscriber, moment)
            found.append(
                Health(
                    name=subscriber.name,
                    enabled=subscriber.enabled,
                    disabled_reason=subscriber.disabled_reason,
                    disabled_at=subscriber.disabled_at,
                    circuit=state,
                    circuit_until=until,
                    last_hour=hour,
                    last_day=day,
                    last_success=last,
                    consecutive_failures=failures_since(connection, subscriber.name, last),
                    pending=waiting.get(subscriber.id, 0),
                )
            )
    return found


def circuit(subscriber: Subscriber, now: datetime) -> tuple[str, datetime | None]:
    """The circuit's state (tasks.circuit) and until when it holds."""
    if subscriber.circuit_open_until is None:
        return "closed", None
    if subscriber.circuit_probe_until is not None and subscriber.circuit_probe_until > now:
        return "probe under way", subscriber.circuit_probe_until
    if subscriber.circuit_open_until > now:
        return "open", subscriber.circuit_open_until
    return "probe due", None  # the cool-down is over: the next delivery, or the oldest held one, probes


def windows(connection: Connection, name: str, now: datetime) -> tuple[Window, Window]:
    """The last hour's and the last day's attempts: their outcomes and durations, read from the
    index (webhook, status, attempted_at, duration_ms) alone."""
    rows = connection.execute(
        select(_attempts.c.status, _attempts.c.attempted_at, _attempts.c.duration_ms).where(
            _attempts.c.webhook == name,
            _attempts.c.status.in_([str(status) for status in ATTEMPTED]),
            _attempts.c.attempted_at >= now - DAY,
        )
    ).all()
    day = [(status == Status.SUCCESS, float(duration)) for status, _, duration in rows]
    hour = [(status == Status.SUCCESS, float(duration)) for status, at, duration in rows if at >= now - HOUR]
    return Window.of(hour), Window.of(day)


def last_success(connection: Connection, name: str) -> datetime | None:
    found = connection.execute(
        select(func.max(_attempts.c.attempted_at)).where(
            _attempts.c.webhook == name, _attempts.c.status == str(Status.SUCCESS)
        )
    ).scalar()
    return cast(datetime | None, found)


def failures_since(connection: Connection, name: str, since: datetime | None) -> int:
    """Failed attempts after ``since`` (every one when None), up to FAILURES_COUNTED."""
    conditions = [_attempts.c.webhook == name, _attempts.c.status.in_([str(status) for status in FAILED])]
    if since is not None:
        conditions.append(_attempts.c.attempted_at > since)
    counted = select(literal(1)).where(*conditions).limit(FAILURES_COUNTED).subquery()
    return int(connection.execute(select(func.count()).select_from(counted)).scalar() or 0)


def pending(chosen: Sequence[Subscriber], now: datetime) -> dict[int, int]:
    """Pending deliveries per subscriber id, as ``webhooks deliveries --pending`` finds them.

    With the audit in the platform's database (the default), one statement: the deliveries
    dispatched within the horizon, not ended, without a final record. Otherwise (two
    databases), ``history.pending``'s way: each such delivery looked up in the audit.
    """
    ids = [subscriber.id for subscriber in chosen]
    if not ids:
        return {}
    since = now - history.PENDING_HORIZON
    if settings.AUDIT_DATABASE_URL != settings.DATABASE_URL:
        return {each: len(history.pending(each, limit=10**9)) for each in ids}
    done = exists().where(
        _attempts.c.delivery_id == _deliveries.c.delivery_id,
        _attempts.c.status.in_([str(status) for status in FINAL]),
    )
    query = (
        select(_deliveries.c.subscriber_id, func.count())
        .where(
            _deliveries.c.subscriber_id.in_(ids),
            _deliveries.c.ended_at.is_(None),
            _deliveries.c.dispatched_at >= since,
            ~done,
        )
        .group_by(_deliveries.c.subscriber_id)
    )
    with database.autocommit_engine(settings.DATABASE_URL).connect() as connection:
        return {int(subscriber): int(count) for subscriber, count in connection.execute(query)}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds") + "+00:00"
