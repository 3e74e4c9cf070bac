"""What the worker does with one arrival of a delivery message (tasks.message).

``process`` decides, in this order, and returns what must happen next: nothing, the
message to publish again with an SQS delay and why (``Again``: a retry, a hop of a long
wait, a hold), or that the delivery failed for good and why (``Failed``: abandoned, or its
message refused), for monitors to show (Flower, the worker's log):

1. a message that fails authentication is refused: recorded under the broker's id, as
   ``refused``, never as a fact about the delivery, lead or subscriber it names; so is an
   authentic one that SQS accepted more than ``WEBHOOK_REPLAY_LIMIT`` after it was sealed (a
   captured message published again: a replay);
2. a message SQS handed out before, or accepted more than ``WEBHOOK_REPLAY_SKEW`` after it was
   sealed, is looked up in the audit: a copy of a delivery that already succeeded is dropped (a
   late copy, which only a replay or clocks far apart make, is recorded ``refused`` as a replay);
3. a delivery an operator ended (``webhooks cancel``, a redelivery, a revoke) is dropped,
   recorded ``cancelled`` or ``superseded``; so is one whose subscriber was deleted;
4. a message that arrived before its due time is put back (a hop: no record);
5. a delivery whose subscriber is disabled is held: parked in the platform database with
   a ``held`` record, sent again by ``webhooks enable``;
6. a delivery whose subscriber's circuit is open is held the same way, until a probe closes
   the circuit (tasks.holds sends the parked ones again then; after the cool-down, the first
   delivery to come, or the oldest parked one, is the probe: tasks.circuit); one over the
   subscriber's in-flight limit goes back to SQS for a few seconds (tasks.limits), recorded
   ``held`` the first time. None of them holds a thread; each record says what holds it;
7. otherwise it is attempted (``attempt``) with the subscriber's current URL and secrets.

Time a delivery spends held does not count against its retry schedule: when it is attempted
again its first failure moves forward by the time held, so it keeps every retry it had left.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

import settings
from records import deliveries
from tasks import audit, circuit, destination, holds, limits, operations, payload, schedule, sender, signature
from tasks.directory import SKEW, NotKnownYet, SubscriberState, directory
from tasks.message import DeliveryMessage
from tasks.transport import receipts
from webhooks import clock, secretbox
from webhooks.clock import from_unix, utcnow
from webhooks.errors import (
    MalformedMessage,
    PermanentError,
    RefusedDestination,
    ReplayedMessage,
    TamperedMessage,
    UndecryptableSecret,
    UnresolvedName,
)
from webhooks.status import Status
from webhooks.text import printable

log = logging.getLogger(audit.LOGGER_NAME)


@dataclass(frozen=True)
class Again:
    """Publish ``message`` again, held by SQS for ``delay`` seconds; ``reason``: why, and when
    it is due, as monitors show it ("HTTP 503; retry 2 due 2026-…")."""

    message: dict[str, Any]
    delay: int
    reason: str = ""


@dataclass(frozen=True)
class Failed:
    """The delivery ended without success, recorded (abandoned, or its message refused):
    ``reason`` as monitors show it ("HTTP 401 after 11 attempts")."""

    reason: str


@dataclass(frozen=True)
class Arrival:
    """What the broker says of one arrival of a message (never what its publisher chose)."""

    broker_id: str  # the id a refused message is recorded under: sqs:<SQS MessageId>
    redelivered: bool = True  # SQS handed it out before (only then can its delivery have succeeded already)
    sent_at: datetime | None = None  # when SQS accepted it (SentTimestamp, on the project's clock); None: unknown
    task_id: str | None = None  # the Celery task id its publisher chose (quoted in a refusal, never the key)

    @classmethod
    def of(cls, request: Any) -> Arrival:
        """The arrival of the task ``request`` (Celery's task context): what tasks.transport set in
        its headers after SQS handed it out, over anything its publisher sent under those names."""
        message_id = request.get(receipts.MESSAGE_ID)
        sent = request.get(receipts.SENT_TIMESTAMP)
        task_id = str(request.id)
        return cls(
            broker_id=broker_id(message_id if isinstance(message_id, str) else None, task_id),
            redelivered=bool((request.delivery_info or {}).get("redelivered", True)),
            sent_at=from_unix(sent / 1000) if isinstance(sent, int) and not isinstance(sent, bool) else None,
            task_id=task_id,
        )


def broker_id(sqs_message_id: str | None, task_id: str | None = None) -> str:
    """The id a refused message is recorded under: SQS's own MessageId (``sqs:<id>``), which no
    publisher chooses; the Celery task id only for a message that did not come from SQS."""
    if sqs_message_id:
        return f"sqs:{sqs_message_id}"[:64]
    return f"task:{task_id or 'unknown'}"[:64]


def process(message: object, arrival: Arrival, now: Callable[[], datetime] = utcnow) -> Again | Failed | None:
    """Handle one arrival of a delivery message. Unexpected errors propagate to the task.

    A message is sealed (``issued_at``, under its MAC) moments before each publish; SQS records
    when it accepted it (``arrival.sent_at``). A message accepted more than
    ``WEBHOOK_REPLAY_LIMIT`` after it was sealed was published again by someone who captured
    it: refused, never sent. A message that waited in the queue (a backlog, a delay) keeps both
    times close, however long it waited: it is delivered.

    A ``redelivered`` message (SQS handed it out before, and it was not deleted), or one
    accepted more than ``WEBHOOK_REPLAY_SKEW`` after it was sealed, is first looked up in the
    audit: if its delivery already succeeded, it is dropped. A message received for the first
    time, on time, is not, while the process's audit writes succeed
    (``audit.writes_succeeding``): no SELECT on the delivery path. A copy that SQS hands out for
    the first time (SQS delivers at least once; a publish retried after a timeout), or one
    published again within ``WEBHOOK_REPLAY_SKEW`` of its sealing, may then be POSTed again,
    with the same ``webhook-id``.
    """
    try:
        delivery = DeliveryMessage.read(message)
    except (MalformedMessage, TamperedMessage) as error:
        return refuse(message, arrival, error)

    late = lateness(delivery, arrival)
    if late is not None and late > settings.WEBHOOK_REPLAY_LIMIT:
        return refuse(message, arrival, ReplayedMessage(f"{_accepted(delivery, late)}: over WEBHOOK_REPLAY_LIMIT"))
    checked = late is None or abs(late) > settings.WEBHOOK_REPLAY_SKEW
    if checked and late is not None:
        log.warning(
            "delivery %s: %s (a replay, or clocks apart): checked in the audit before it is sent",
            delivery.delivery_id,
            _accepted(delivery, late),
        )
    if (checked or arrival.redelivered or not audit.writes_succeeding()) and audit.already_delivered(
        delivery.delivery_id
    ):
        if checked:  # a late copy: only a replay makes one (or clocks far apart)
            return refuse(message, arrival, ReplayedMessage(f"delivery {delivery.delivery_id} already succeeded"))
        log.info("delivery %s already succeeded: duplicate message dropped", delivery.delivery_id)
        return None

    ended = directory.ended(delivery.delivery_id)
    if ended is not None:
        end(delivery, Status(ended.status), f"{ended.status} ({ended.reason}): its message was removed from the queue")
        return None
    try:
        subscriber = directory.subscriber(delivery.subscriber_id, delivery.webhook, delivery.issued_at)
    except NotKnownYet:  # issued moments ago for a subscriber created as fast: come back (as it is)
        wait = int(SKEW.total_seconds())
        reason = f"its subscriber is not known to this worker yet (created moments ago): tried again in {wait} s"
        return Again(dict(message) if isinstance(message, Mapping) else {}, wait, reason)
    if subscriber is None:
        end(delivery, Status.CANCELLED, "its subscriber was deleted")
        return None

    arrived = now()
    if schedule.is_early(delivery.due_at, arrived):
        assert delivery.due_at is not None
        delay = max(1, schedule.delay_seconds(delivery.due_at, arrived, settings.SQS_MAX_DELAY))
        log.debug("delivery %s arrived before %s: put back for %d s", delivery.delivery_id, delivery.due_at, delay)
        return Again(delivery.sealed(), delay, f"retry {delivery.retry} due {_iso(delivery.due_at)}; {_HOP}")

    if not subscriber.enabled:
        return hold(delivery, subscriber)

    if (arrival.redelivered or not audit.writes_succeeding()) and audit.already_delivered(delivery.delivery_id):
        log.info("delivery %s already succeeded: duplicate message dropped", delivery.delivery_id)
        return None

    probe = False
    if subscriber.circuit.open:
        assert subscriber.circuit.open_until is not None
        if arrived < subscriber.circuit.open_until:
            until = subscriber.circuit.open_until
            return hold(delivery, subscriber, f"its circuit is open until {_iso(until)}", until, arrived)
        probe = circuit.claim_probe(subscriber.id)
        if not probe:  # another delivery probes: this one waits for its answer
            answer = arrived + timedelta(seconds=settings.WEBHOOK_TIMEOUT + 1)
            return hold(delivery, subscriber, "its circuit's probe is under way", answer, arrived)

    with limits.slot(subscriber.id) as taken:
        if not taken:
            limit = settings.WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIBER
            reason = f"{limit} requests to its subscriber are in flight in this worker (its limit)"
            return held_back(delivery, reason, limits.OVER_LIMIT_WAIT, arrived)
        return attempt(resumed(delivery, arrived), subscriber, now, probe=probe)


def lateness(delivery: DeliveryMessage, arrival: Arrival) -> float | None:
    """Seconds from the message's sealing (``issued_at``) to SQS accepting it (``sent_at``),
    negative when the sealing clock runs ahead of SQS's; None when either time is unknown."""
    if delivery.issued_at is None or arrival.sent_at is None:
        return None
    return (arrival.sent_at - delivery.issued_at).total_seconds()


def _accepted(delivery: DeliveryMessage, late: float) -> str:
    return f"SQS accepted its message {late:.0f} s after it was sealed at {_iso(delivery.issued_at or utcnow())}"


def held_back(delivery: DeliveryMessage, reason: str, wait: int, now: datetime) -> Again:
    """Send the delivery back to SQS for ``wait`` seconds (at most SQS_MAX_DELAY: longer waits
    hop); the first time it is held, record it, with what holds it and until when."""
    delay = max(1, min(wait, settings.SQS_MAX_DELAY))
    why = f"held: {reason}; tried again at {_iso(now + timedelta(seconds=wait))}"
    if delivery.held_since is None:
        audit.record(_attempt(delivery, Status.HELD, why, now))
        delivery = delivery.but(held_since=now)
    return Again(delivery.but(due_at=None).sealed(), delay, why)


def resumed(delivery: DeliveryMessage, now: datetime) -> DeliveryMessage:
    """A delivery attempted after a hold: its schedule moves forward by the time it was held."""
    if delivery.held_since is None:
        return delivery
    shifted = delivery.first_failure_at + (now - delivery.held_since) if delivery.first_failure_at else None
    return delivery.but(held_since=None, first_failure_at=shifted)


def attempt(
    delivery: DeliveryMessage, subscriber: SubscriberState, now: Callable[[], datetime] = utcnow, *, probe: bool = False
) -> Again | Failed | None:
    """Build, sign and POST one attempt; record it; say when the next one is due. A ``probe``
    (of an open circuit) closes or re-opens the circuit with its answer."""
    body = payload.encode(payload.build(delivery.lead, delivery.retry))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": settings.WEBHOOK_USER_AGENT,
        "webhook-id": delivery.webhook_id,
    }
    attempted_at = now()

    def record(
        status: Status,
        error: str | None,
        response: sender.Response | None = None,
        address: str | None = None,
        next_retry_at: datetime | None = None,
    ) -> None:
        audit.record(
            _attempt(delivery, status, error, attempted_at, subscriber.url).but(
                http_status=response.http_status if response else None,
                request_headers=dict(headers),
                request_body=body.decode("utf-8"),
                response_body=response.body if response else None,
                duration_ms=response.duration_ms if response else 0.0,
                next_retry_at=next_retry_at,
                address=address,
            )
        )

    try:
        secrets = signing_secrets(subscriber, attempted_at)
        target = destination.check(subscriber.url)
    except PermanentError as error:  # an undecryptable secret, a refused destination
        reason = f"refused destination: {error}" if isinstance(error, RefusedDestination) else str(error)
        record(Status.ABANDONED, reason)
        return Failed(reason)
    except UnresolvedName as error:  # DNS may come back: a failure like any other
        target, response = None, sender.Response(None, None, f"connection error: {error}", 0.0)
    headers.update(signature.headers(delivery.webhook_id, clock.wall_seconds(attempted_at), body, secrets))
    if target is not None:
        response = sender.post(target, body, headers)
    address = target.address if target else None
    if probe:
        circuit.probed(subscriber.id, subscriber.name, response.ok, subscriber.circuit.cooldown, response.error)
        directory.forget()  # this process sees the circuit's new state at once
        if response.ok:
            holds.nudge()  # its parked deliveries are sent again now, not at the next look
    if response.ok:
        record(Status.SUCCESS, None, response, address)
        return None

    if response.http_status == 410:  # Gone: the subscriber says it no longer wants deliveries
        reason = f"HTTP 410 Gone at {_iso(attempted_at)}"
        record(Status.ABANDONED, f"HTTP 410 Gone: the subscriber is disabled ({reason})", response, address)
        disable(subscriber, reason)
        return Failed(f"HTTP 410 Gone after {_attempts(delivery.retry + 1)}: its subscriber is disabled")

    offsets = settings.WEBHOOK_RETRY_SCHEDULE
    first_failure = delivery.first_failure_at or attempted_at
    due = schedule.next_retry_at(first_failure, delivery.retry, offsets, attempted_at)
    outcome = response.error
    if response.http_status in (429, 503) and response.retry_after is not None and due is not None:
        shown = printable(repr(response.retry_after))[:80]
        try:
            asked = schedule.parse_retry_after(response.retry_after, attempted_at)
        except ValueError as refused:
            outcome = f"{outcome}; Retry-After ignored ({printable(str(refused))[:120]})"
        else:
            capped = min(asked, attempted_at + timedelta(seconds=settings.WEBHOOK_RETRY_AFTER_MAX))
            due = schedule.honour_retry_after(due, capped, first_failure, offsets)
            outcome = f"{outcome}; Retry-After {shown} honoured: next attempt at {_iso(due)}"
            if capped < asked:
                outcome += f" (capped by WEBHOOK_RETRY_AFTER_MAX, {settings.WEBHOOK_RETRY_AFTER_MAX} s)"
    record(Status.ERROR if due else Status.ABANDONED, outcome, response, address, due)
    watch_failures(subscriber, attempted_at)
    if due is None:
        operations.notify(
            "delivery.abandoned",
            {
                "webhook": subscriber.name,
                "delivery_id": delivery.delivery_id,
                "lead_id": delivery.lead_id,
                "attempts": delivery.retry + 1,
                "error": outcome,
            },
        )
        return Failed(f"{outcome} after {_attempts(delivery.retry + 1)}")
    following = delivery.but(retry=delivery.retry + 1, first_failure_at=first_failure, due_at=due)
    delay = schedule.delay_seconds(due, now(), settings.SQS_MAX_DELAY)
    return Again(following.sealed(), delay, f"{outcome}; retry {following.retry} due {_iso(due)}")


def _attempts(count: int) -> str:
    return f"{count} attempt{'s' if count != 1 else ''}"


def disable(subscriber: SubscriberState, reason: str) -> None:
    """Disable a subscriber from the worker (410 Gone, failing for WEBHOOK_DISABLE_AFTER): its
    pending deliveries are held from then on; recorded, logged, told to the operators."""
    if circuit.disable(subscriber.id, reason):
        circuit.record_event(subscriber.id, subscriber.name, "subscriber.disabled", reason)
    directory.forget()


# Per subscriber name, when this process last asked the audit how long it has been failing.
_failure_checks: dict[str, float] = {}


def watch_failures(subscriber: SubscriberState, now: datetime) -> None:
    """After a failure: disable a subscriber whose attempts have all failed for
    WEBHOOK_DISABLE_AFTER (asked of the audit at most every tenth of that, at most every
    minute, per process: failures alone pay for it)."""
    after = settings.WEBHOOK_DISABLE_AFTER
    if after <= 0:
        return
    every = min(60.0, after / 10)
    last = _failure_checks.get(subscriber.name)
    if last is not None and time.monotonic() - last < every:
        return
    _failure_checks[subscriber.name] = time.monotonic()
    since = circuit.failing_since(subscriber.name)
    if since is not None and (now - since).total_seconds() >= after:
        disable(subscriber, f"every attempt failed since {_iso(since)} (WEBHOOK_DISABLE_AFTER, {after} s)")


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds") + "+00:00"


def signing_secrets(subscriber: SubscriberState, now: datetime) -> list[str]:
    """The secrets that sign an attempt made now, current first. The current one must open
    (UndecryptableSecret otherwise); a previous one that does not is left out, with a warning,
    rather than failing deliveries that the current secret can sign."""
    current, *previous = subscriber.sealed_secrets(now)
    secrets = [secretbox.unseal(current)]
    for sealed in previous:
        try:
            secrets.append(secretbox.unseal(sealed))
        except UndecryptableSecret:
            log.warning("the previous secret of %s does not decrypt: only the current one signs", subscriber.name)
    return secrets


def hold(
    delivery: DeliveryMessage,
    subscriber: SubscriberState,
    why: str | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> Again | None:
    """Park the delivery of a disabled subscriber (``why`` None) until ``webhooks enable``, or one
    whose circuit is open (``why`` says how, ``until`` when it is looked at again) until it
    closes (tasks.holds); record it held. When what held it is gone meanwhile, it comes back in
    a second instead; when an operator ended it meanwhile, its end is recorded. When the
    platform database cannot be written, it goes back to SQS (until then, or for SQS_MAX_DELAY),
    as a hold did before deliveries were parked: a database outage abandons nothing."""
    if why is None:
        reason = f"held: its subscriber is disabled ({subscriber.disabled_reason or 'webhooks disable'})"
        then = f"sent again by `webhooks enable {subscriber.name}`"
    else:
        reason = f"held: {why}"
        then = "sent again once a probe succeeds (it closes the circuit)"
    moment = now or utcnow()
    try:
        done = holds.park(delivery, subscriber, reason, circuit_open=why is not None)
    except SQLAlchemyError as error:
        log.warning("delivery %s could not be parked (%s): held in SQS instead", delivery.delivery_id, _short(error))
        wait = settings.SQS_MAX_DELAY if until is None else math.ceil((until - moment).total_seconds())
        return held_back(
            delivery, f"{why or 'its subscriber is disabled'} (the database could not park it)", wait, moment
        )
    if done.ended is not None:
        status, ended_reason = done.ended
        end(delivery, Status(status), f"{status} ({ended_reason}): its message was removed from the queue")
        return None
    if not done.parked:
        gone = "its subscriber was enabled" if why is None else "its circuit closed"
        return Again(delivery.sealed(), 1, f"{gone} meanwhile: tried again in 1 s")
    audit.record(_attempt(delivery, Status.HELD, f"{reason}; {then}", moment))
    return None


def _short(error: BaseException) -> str:
    return printable(str(error), one_line=True)[:200]


def end(delivery: DeliveryMessage, status: Status, reason: str) -> None:
    """Record that a delivery ends here without an attempt (its message is dropped)."""
    audit.record(_attempt(delivery, status, reason, utcnow()))


def revoked(message: object, arrival: Arrival, how: str) -> None:
    """A revoked task (Flower, ``celery control revoke``): the delivery ends cancelled, in the
    platform's row (so every worker drops its later messages) and in the audit."""
    try:
        delivery = DeliveryMessage.read(message)
    except (MalformedMessage, TamperedMessage) as error:
        refuse(message, arrival, error)
        return
    reason = f"{how} by Celery remote control (Flower, celery control revoke)"
    deliveries.end(delivery.delivery_id, Status.CANCELLED, reason, delivery.row())
    end(delivery, Status.CANCELLED, reason)


def after_crash(message: object, arrival: Arrival, error: BaseException) -> Again | Failed | None:
    """A message whose processing failed unexpectedly (a bug, a database error): publish it
    again after a visibility timeout's wait, counting the failure; after
    ``WEBHOOK_MAX_UNEXPECTED_FAILURES`` of them it ends ``abandoned`` with the error, and
    ``webhooks redeliver`` sends it again once the cause is fixed."""
    try:
        delivery = DeliveryMessage.read(message)
    except (MalformedMessage, TamperedMessage) as unreadable:
        return refuse(message, arrival, unreadable)
    crashes = delivery.crashes + 1
    last = f"{type(error).__name__}: {printable(str(error), one_line=True)[:500]}"
    if crashes < settings.WEBHOOK_MAX_UNEXPECTED_FAILURES:
        reason = (
            f"processing failed unexpectedly ({crashes} of {settings.WEBHOOK_MAX_UNEXPECTED_FAILURES} times "
            f"allowed): {last}; tried again in {BACKOFF} s"
        )
        return Again(delivery.but(crashes=crashes).sealed(), BACKOFF, reason)
    reason = (
        f"processing failed unexpectedly {crashes} times, last: {last}"
        f" (send it again with `webhooks redeliver {delivery.delivery_id}`)"
    )
    try:
        audit.record(_attempt(delivery, Status.ABANDONED, reason, utcnow()))
    except Exception:  # the audit itself fails: keep the message, nothing is dropped unrecorded
        log.exception("delivery %s could not be recorded abandoned; it comes back", delivery.delivery_id)
        return Again(delivery.but(crashes=crashes).sealed(), BACKOFF, f"{reason}; its record failed: it comes back")
    return Failed(reason)


# Why a delivery that is not due yet goes back to SQS again (a wait longer than one SQS delay hops).
_HOP = f"waiting (SQS delays a message {settings.SQS_MAX_DELAY} s at most)"

# What the seed calls "+15 minutes": a crashed attempt waits one visibility timeout.
BACKOFF = min(settings.SQS_VISIBILITY_TIMEOUT, settings.SQS_MAX_DELAY)


_KINDS = {TamperedMessage: "unauthenticated", MalformedMessage: "malformed", ReplayedMessage: "replayed"}


def refuse(message: object, arrival: Arrival, error: MalformedMessage | TamperedMessage | ReplayedMessage) -> Failed:
    """A message we cannot trust or read, or a replay: recorded under the broker's id as
    ``refused``, its claimed fields only quoted (escaped) in the error, never stored as the
    delivery's, lead's or subscriber's; never retried."""
    fields: Mapping[str, Any] = message if isinstance(message, Mapping) else {}
    lead = fields.get("lead")
    claimed = {
        "delivery_id": fields.get("delivery_id"),
        "webhook": fields.get("webhook"),
        "lead_id": lead.get("id") if isinstance(lead, Mapping) else None,
        "retry": fields.get("retry"),
        "task_id": arrival.task_id,
    }
    shown = ", ".join(f"{name}={printable(repr(value))[:120]}" for name, value in claimed.items() if value is not None)
    kind = _KINDS[type(error)]
    reason = f"{kind} message refused: {error}" + (f"; it claimed {shown}" if shown else "")
    record_refused(arrival.broker_id, reason)
    return Failed(printable(reason, one_line=True)[:500])


def record_refused(broker_id: str, reason: str) -> None:
    """Record a message removed from the queue without a delivery: under the broker's id, as
    ``refused``, with ``reason`` (made printable, one line); nothing else of it is stored."""
    audit.record(
        audit.Attempt(
            delivery_id=broker_id[:64],
            lead_id="",
            webhook="",
            url="",
            retry=0,
            status=Status.REFUSED,
            http_status=None,
            error=printable(reason, one_line=True)[:4000],
            request_headers={},
            request_body="",
            response_body=None,
            duration_ms=0.0,
            attempted_at=utcnow(),
            next_retry_at=None,
        )
    )


def _attempt(
    delivery: DeliveryMessage, status: Status, error: str | None, at: datetime, url: str = ""
) -> audit.Attempt:
    """The audit record of this delivery with nothing sent: ``but`` fills in an exchange."""
    return audit.Attempt(
        delivery_id=delivery.delivery_id,
        lead_id=delivery.lead_id,
        webhook=delivery.webhook,
        url=url,
        retry=delivery.retry,
        status=status,
        http_status=None,
        error=error,
        request_headers={},
        request_body=payload.encode(payload.build(delivery.lead, delivery.retry)).decode("utf-8"),
        response_body=None,
        duration_ms=0.0,
        attempted_at=at,
        next_retry_at=None,
        redelivery_of=delivery.redelivery_of,
    )
