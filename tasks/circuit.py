"""The circuit breaker of each subscriber, shared by every worker of the fleet.

Its state lives in the platform database (``webhook_configs.circuit_*``), which every worker
already reads: each worker's cache (tasks.directory) loads it with the subscribers, and with
it the fleet's recent outcomes per subscriber, counted in the audit (one grouped statement
per load). No statement is added to a delivery while circuits are closed.

- **Trip.** When a subscriber's attempts of the last ``WEBHOOK_CIRCUIT_WINDOW`` (since its
  circuit last closed) number at least ``WEBHOOK_CIRCUIT_MIN_ATTEMPTS`` and fail at least
  ``WEBHOOK_CIRCUIT_FAILURE_RATIO`` of the time (timeouts and connection errors count), the
  worker whose cache sees it opens the circuit for ``WEBHOOK_CIRCUIT_COOLDOWN`` (one
  conditional UPDATE: one worker wins, records and tells).
- **Open.** Its deliveries are not POSTed and hold no thread: they are parked in the platform
  database (tasks.holds), recorded ``held``, and take no place in SQS.
- **Probe.** After the cool-down the first delivery to arrive claims the probe (a conditional
  UPDATE); when none arrives, a worker sends the oldest parked one again for it (tasks.holds;
  that send never keeps an arriving delivery from the probe). It is attempted: a success
  closes the circuit, a failure opens it again for twice the cool-down, at most
  ``WEBHOOK_CIRCUIT_COOLDOWN_MAX`` (so does a trip less than ``WEBHOOK_CIRCUIT_WINDOW`` after
  a closing). The deliveries arriving while it is under way are parked too; once the circuit
  is closed, the workers send the parked ones again.

Opening and closing are recorded (``subscriber_events``), logged, and told to the operators
(tasks.operations).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import ColumnElement, Connection, Table, and_, case, func, insert, or_, select, update

import settings
from records import database
from records.models import DeliveryAttempt, Subscriber, SubscriberEvent
from webhooks.clock import utcnow
from webhooks.status import Status

log = logging.getLogger("webhooks.subscribers")

_subscribers = cast(Table, Subscriber.__table__)
_attempts = cast(Table, DeliveryAttempt.__table__)
_events = cast(Table, SubscriberEvent.__table__)
# Outcomes of a POST (held, cancelled… records are not attempts).
_ATTEMPTED = (Status.SUCCESS, Status.ERROR, Status.ABANDONED)


@dataclass(frozen=True)
class Circuit:
    """A subscriber's circuit as the cache saw it."""

    open_until: datetime | None = None  # open (cool-down) until then; None: closed
    cooldown: int | None = None  # seconds of the current opening (doubles at each failed probe)
    closed_at: datetime | None = None  # when it last closed: outcomes before do not count
    probe_until: datetime | None = None  # a worker's probe is under way until then

    @property
    def open(self) -> bool:
        return self.open_until is not None


@dataclass(frozen=True)
class Outcomes:
    attempts: int
    failures: int

    def trip(self) -> bool:
        return (
            self.attempts >= settings.WEBHOOK_CIRCUIT_MIN_ATTEMPTS
            and self.failures >= settings.WEBHOOK_CIRCUIT_FAILURE_RATIO * self.attempts
        )


def recent_outcomes(since: datetime, names: dict[str, datetime | None]) -> dict[str, Outcomes]:
    """The fleet's attempts and failures per subscriber name since ``since`` (or since its
    circuit closed, when later), from the audit."""
    failed = func.sum(case((_attempts.c.status == Status.SUCCESS, 0), else_=1))
    query = (
        select(_attempts.c.webhook, func.count(), failed)
        .where(_attempts.c.attempted_at >= since, _attempts.c.status.in_([str(s) for s in _ATTEMPTED]))
        .group_by(_attempts.c.webhook)
    )
    found: dict[str, Outcomes] = {}
    with database.autocommit_engine(settings.AUDIT_DATABASE_URL).connect() as connection:
        for name, attempts, failures in connection.execute(query):
            found[name] = Outcomes(int(attempts), int(failures or 0))
        for name, closed_at in names.items():  # closed within the window: count from then on
            if name in found and closed_at is not None and closed_at > since:
                found[name] = _since_closing(connection, name, closed_at)
    return found


def _since_closing(connection: Connection, name: str, closed_at: datetime) -> Outcomes:
    failed = func.sum(case((_attempts.c.status == Status.SUCCESS, 0), else_=1))
    attempts, failures = connection.execute(
        select(func.count(), failed).where(
            _attempts.c.webhook == name,
            _attempts.c.attempted_at > closed_at,
            _attempts.c.status.in_([str(s) for s in _ATTEMPTED]),
        )
    ).one()
    return Outcomes(int(attempts), int(failures or 0))


def open_if_closed(subscriber_id: int, name: str, outcomes: Outcomes) -> tuple[datetime, int] | None:
    """Open the circuit unless another worker did; the time it opens until and its cool-down,
    if this one did. The cool-down is ``WEBHOOK_CIRCUIT_COOLDOWN``, or, for a circuit that
    closed less than ``WEBHOOK_CIRCUIT_WINDOW`` ago, twice the last one (at most
    ``WEBHOOK_CIRCUIT_COOLDOWN_MAX``): a subscriber that answers its probe and fails again at
    once does not get its deliveries sent again every minute."""
    now = utcnow()
    with database.platform() as session:
        found = session.execute(
            select(_subscribers.c.circuit_open_until, _subscribers.c.circuit_cooldown, _subscribers.c.circuit_closed_at)
            .where(_subscribers.c.id == subscriber_id)
            .with_for_update()
        ).one_or_none()
        if found is None or found.circuit_open_until is not None:
            return None
        recently = found.circuit_closed_at is not None and (now - found.circuit_closed_at).total_seconds() < (
            settings.WEBHOOK_CIRCUIT_WINDOW
        )
        cooldown = settings.WEBHOOK_CIRCUIT_COOLDOWN
        if recently and found.circuit_cooldown:
            cooldown = min(2 * int(found.circuit_cooldown), settings.WEBHOOK_CIRCUIT_COOLDOWN_MAX)
        doubled = cooldown != settings.WEBHOOK_CIRCUIT_COOLDOWN
        until = now + timedelta(seconds=cooldown)
        session.execute(
            update(_subscribers)
            .where(_subscribers.c.id == subscriber_id)
            .values(
                circuit_open_until=until,
                circuit_cooldown=cooldown,
                circuit_probe_until=None,
                circuit_probe_delivery=None,
            )
        )
        detail = (
            f"{outcomes.failures} of {outcomes.attempts} attempts failed in the last "
            f"{settings.WEBHOOK_CIRCUIT_WINDOW} s; deliveries wait until {until.isoformat()}+00:00 ({cooldown} s"
            + (", twice the last: it closed less than the window ago)" if doubled else ")")
        )
        _event(session.connection(), subscriber_id, name, "subscriber.circuit_opened", detail, now)
    _tell("subscriber.circuit_opened", name, detail)
    return until, cooldown


def claim_probe(subscriber_id: int) -> bool:
    """True for the one delivery arriving that may be the probe of an open circuit whose
    cool-down ended: unless an attempt is under way (claimed less than 2 x WEBHOOK_TIMEOUT + 5 s
    ago: a probe that never answers, its worker killed, is claimed again after it). A parked
    delivery sent for the probe (``claim_parked_probe``) does not keep an arrival from it: the
    first delivery to arrive probes, whichever it is."""
    lasting = settings.WEBHOOK_TIMEOUT * 2 + 5
    return _claim(subscriber_id, lasting, None, _subscribers.c.circuit_probe_delivery.is_not(None))


def claim_parked_probe(subscriber_id: int, delivery_id: str, seconds: float) -> bool:
    """True for the one worker that may send the parked ``delivery_id`` again for the probe of an
    open circuit whose cool-down ended, when no delivery arrived to be it (tasks.holds): no
    attempt or such a send under way. The claim lasts ``seconds`` (its message on its way);
    the first delivery to arrive takes it over (``claim_probe``)."""
    return _claim(subscriber_id, seconds, delivery_id[:64])


def _claim(subscriber_id: int, seconds: float, delivery_id: str | None, *taking_over: ColumnElement[bool]) -> bool:
    """The conditional UPDATE of a probe's claim: the circuit open, its cool-down over, and no
    claim running (or one of ``taking_over``); True if this one took it."""
    now = utcnow()
    free = or_(_subscribers.c.circuit_probe_until.is_(None), _subscribers.c.circuit_probe_until < now, *taking_over)
    with database.platform() as session:
        done = session.execute(
            update(_subscribers)
            .where(
                _subscribers.c.id == subscriber_id,
                _subscribers.c.circuit_open_until.is_not(None),
                _subscribers.c.circuit_open_until <= now,
                free,
            )
            .values(circuit_probe_until=now + timedelta(seconds=seconds), circuit_probe_delivery=delivery_id)
        )
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def unclaim_parked_probe(subscriber_id: int, delivery_id: str) -> None:
    """Give up the claim of ``claim_parked_probe`` (nothing was sent): the next look tries again."""
    with database.platform() as session:
        session.execute(
            update(_subscribers)
            .where(_subscribers.c.id == subscriber_id, _subscribers.c.circuit_probe_delivery == delivery_id[:64])
            .values(circuit_probe_until=None, circuit_probe_delivery=None)
        )


def probed(subscriber_id: int, name: str, succeeded: bool, cooldown: int | None, error: str | None) -> None:
    """The probe's answer: close the circuit, or open it again for twice the cool-down."""
    now = utcnow()
    with database.platform() as session:
        if succeeded:
            session.execute(
                update(_subscribers)
                .where(_subscribers.c.id == subscriber_id)
                .values(
                    circuit_open_until=None,  # its cool-down stays: a re-opening within the window doubles it
                    circuit_probe_until=None,
                    circuit_probe_delivery=None,
                    circuit_closed_at=now,
                )
            )
            kind, detail = "subscriber.circuit_closed", "a probe succeeded: deliveries go again"
        else:
            longer = min(2 * (cooldown or settings.WEBHOOK_CIRCUIT_COOLDOWN), settings.WEBHOOK_CIRCUIT_COOLDOWN_MAX)
            until = now + timedelta(seconds=longer)
            session.execute(
                update(_subscribers)
                .where(_subscribers.c.id == subscriber_id)
                .values(
                    circuit_open_until=until,
                    circuit_cooldown=longer,
                    circuit_probe_until=None,
                    circuit_probe_delivery=None,
                )
            )
            kind = "subscriber.circuit_opened"
            detail = f"a probe failed ({error}): deliveries wait until {until.isoformat()}+00:00 ({longer} s)"
        _event(session.connection(), subscriber_id, name, kind, detail, now)
    _tell(kind, name, detail)


def _event(connection: Connection, subscriber_id: int, name: str, kind: str, detail: str, at: datetime) -> None:
    connection.execute(
        insert(_events).values(subscriber_id=subscriber_id, webhook=name, kind=kind, detail=detail, at=at)
    )


def disable(subscriber_id: int, reason: str) -> bool:
    """Disable the subscriber unless it already is; True if this call did."""
    with database.platform() as session:
        done = session.execute(
            update(_subscribers)
            .where(_subscribers.c.id == subscriber_id, _subscribers.c.enabled.is_(True))
            .values(enabled=False, disabled_reason=reason[:500], disabled_at=utcnow())
        )
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def record_event(subscriber_id: int, name: str, kind: str, detail: str) -> None:
    """Record a subscriber event of another kind (subscriber.disabled) and tell the operators."""
    with database.platform() as session:
        _event(session.connection(), subscriber_id, name, kind, detail, utcnow())
    _tell(kind, name, detail)


def _tell(kind: str, name: str, detail: str) -> None:
    from tasks import operations  # the operations module publishes a task: imported late

    operations.notify(kind, {"webhook": name, "detail": detail})


def failing_since(name: str) -> datetime | None:
    """When the subscriber's unbroken run of failures began (None: its last attempt succeeded,
    or it has none): the first failure after its last success, from the audit."""
    attempted = _attempts.c.status.in_([str(s) for s in _ATTEMPTED])
    with database.autocommit_engine(settings.AUDIT_DATABASE_URL).connect() as connection:
        last_success = connection.execute(
            select(func.max(_attempts.c.attempted_at)).where(
                _attempts.c.webhook == name, _attempts.c.status == Status.SUCCESS
            )
        ).scalar()
        after = [_attempts.c.webhook == name, attempted, _attempts.c.status != Status.SUCCESS]
        if last_success is not None:
            after.append(_attempts.c.attempted_at > last_success)
        first = connection.execute(select(func.min(_attempts.c.attempted_at)).where(and_(*after))).scalar()
    return cast(datetime | None, first)
