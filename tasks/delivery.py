"""One delivery of one lead to one subscriber: the message, and what the worker does with it.

The message (the single argument of ``deliver_webhook``) carries everything the worker
needs, so the worker never reads the subscriber table::

    {
      "delivery_id": "4b0c…",        # optional: defaults to the Celery task id; the webhook-id header
      "webhook": "dummy-subscriber",   # the subscriber's name
      "url": "https://…/webhooks",
      "secret": "base64…",             # the secret, sealed with webhooks.secretbox (SecretBox)
      "lead": {"created_at": …, "id": …, …},   # the payload body without "retry"
      "retry": 0,                      # attempts already made (body.retry of this attempt)
      "first_failure_at": null,        # ISO 8601 time of the first failure, once there is one
      "due_at": null,                  # ISO 8601 time before which the attempt must not run
      "previous_secret": "base64…",    # optional: after a rotation, the old secret (sealed), which
      "previous_secret_until": "…",    #   also signs until this ISO 8601 time
      "redelivery_of": "…",            # optional: the delivery this one redelivers
      "mac": "…"                       # HMAC of all the above (webhooks.secretbox.authenticate)
    }

Build one with ``new_message``; a message whose MAC does not match is refused unread.

``process`` runs one arrival of that message and returns what must happen next: nothing,
or the message to publish again with an SQS delay (a retry, or a hop of a long wait).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import settings
from tasks import audit, destination, payload, schedule, sender, signature
from webhooks import secretbox
from webhooks.errors import MalformedMessage, PermanentError, RefusedDestination, TamperedMessage

log = logging.getLogger(audit.LOGGER_NAME)


def utcnow() -> datetime:
    """Naive UTC, as stored in the audit tables."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    webhook: str
    url: str
    secret: str
    lead: Mapping[str, Any]
    retry: int = 0
    first_failure_at: datetime | None = None
    due_at: datetime | None = None
    previous_secret: str | None = None
    previous_secret_until: datetime | None = None
    redelivery_of: str | None = None

    @classmethod
    def from_message(cls, message: object, default_id: str) -> Delivery:
        if not isinstance(message, Mapping):
            raise MalformedMessage(f"the delivery must be an object, not {type(message).__name__}")
        secretbox.check_authentic(message)
        unknown = set(message) - _FIELDS
        if unknown:
            raise MalformedMessage(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(_FIELDS)}")
        for name in ("webhook", "url", "secret"):
            if not isinstance(message.get(name), str) or not message[name]:
                raise MalformedMessage(f"field {name!r} must be a non-empty string")
        lead = message.get("lead")
        if not isinstance(lead, Mapping) or not isinstance(lead.get("created_at"), str):
            raise MalformedMessage("field 'lead' must be an object with a 'created_at' string")
        retry = message.get("retry", 0)
        if not isinstance(retry, int) or isinstance(retry, bool) or retry < 0:
            raise MalformedMessage("field 'retry' must be a whole number >= 0")
        delivery_id = message.get("delivery_id") or default_id
        for name in ("delivery_id", "previous_secret", "redelivery_of"):
            if message.get(name) is not None and not isinstance(message[name], str):
                raise MalformedMessage(f"field {name!r} must be a string")
        return cls(
            delivery_id=delivery_id,
            webhook=message["webhook"],
            url=message["url"],
            secret=message["secret"],
            lead=lead,
            retry=retry,
            first_failure_at=_moment(message, "first_failure_at"),
            due_at=_moment(message, "due_at"),
            previous_secret=message.get("previous_secret"),
            previous_secret_until=_moment(message, "previous_secret_until"),
            redelivery_of=message.get("redelivery_of"),
        )

    def to_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "delivery_id": self.delivery_id,
            "webhook": self.webhook,
            "url": self.url,
            "secret": self.secret,
            "lead": dict(self.lead),
            "retry": self.retry,
            "first_failure_at": _iso(self.first_failure_at),
            "due_at": _iso(self.due_at),
        }
        optional = {
            "previous_secret": self.previous_secret,
            "previous_secret_until": _iso(self.previous_secret_until),
            "redelivery_of": self.redelivery_of,
        }
        message.update((name, value) for name, value in optional.items() if value is not None)
        return secretbox.authenticate(message)

    def secrets(self, now: datetime) -> list[str]:
        """The sealed secrets that sign this attempt: the current one, and the previous one
        during its grace period."""
        if self.previous_secret and self.previous_secret_until and now < self.previous_secret_until:
            return [self.secret, self.previous_secret]
        return [self.secret]

    @property
    def lead_id(self) -> str:
        return str(self.lead.get("id", ""))


_FIELDS = {
    "delivery_id",
    "webhook",
    "url",
    "secret",
    "lead",
    "retry",
    "first_failure_at",
    "due_at",
    "previous_secret",
    "previous_secret_until",
    "redelivery_of",
    "mac",
}


def summary(message: object) -> str:
    """What monitors (Flower, logs of Celery) show of a message instead of its arguments:
    the ids, never the lead's personal data nor the sealed secrets."""
    fields: Mapping[str, Any] = message if isinstance(message, Mapping) else {}
    lead = fields.get("lead") if isinstance(fields.get("lead"), Mapping) else {}
    return repr(
        {
            "delivery_id": fields.get("delivery_id"),
            "webhook": fields.get("webhook"),
            "lead_id": lead.get("id") if isinstance(lead, Mapping) else None,
            "retry": fields.get("retry", 0),
            "due_at": fields.get("due_at"),
        }
    )


def new_message(
    *,
    webhook: str,
    url: str,
    sealed_secret: str,
    lead: Mapping[str, Any],
    delivery_id: str | None = None,
    previous_sealed_secret: str | None = None,
    previous_secret_until: datetime | None = None,
    redelivery_of: str | None = None,
) -> dict[str, Any]:
    """The argument of ``deliver_webhook``: a first attempt, authenticated.

    ``sealed_secret`` is the subscriber's secret sealed with ``webhooks.secretbox.seal``;
    ``lead`` a lead as ``producer.leads.normalize`` returns it. After a secret rotation,
    ``previous_sealed_secret`` signs too until ``previous_secret_until`` (naive UTC).
    """
    return Delivery(
        delivery_id=delivery_id or "",
        webhook=webhook,
        url=url,
        secret=sealed_secret,
        lead=lead,
        previous_secret=previous_sealed_secret if previous_secret_until else None,
        previous_secret_until=previous_secret_until if previous_sealed_secret else None,
        redelivery_of=redelivery_of,
    ).to_message()


def _moment(message: Mapping[str, Any], name: str) -> datetime | None:
    raw = message.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except (TypeError, ValueError):
        raise MalformedMessage(f"field {name!r} must be an ISO 8601 time, not {raw!r}") from None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat() + "+00:00"


@dataclass(frozen=True)
class Again:
    """Publish ``message`` again, held by SQS for ``delay`` seconds."""

    message: dict[str, Any]
    delay: int


def process(
    message: object, default_id: str, now: Callable[[], datetime] = utcnow, *, redelivered: bool = True
) -> Again | None:
    """Handle one arrival of a delivery message. Unexpected errors propagate to the task.

    A ``redelivered`` message (SQS handed it out before, and it was not deleted) is first
    looked up in the audit: if its delivery already succeeded, it is dropped. A message
    received for the first time is not, while the process's audit writes succeed
    (``audit.writes_succeeding``): one SELECT less on every delivery. A copy that SQS hands out
    for the first time (SQS delivers at least once; a publish retried after a timeout) may then
    be POSTed again, with the same ``webhook-id``.
    """
    try:
        delivery = Delivery.from_message(message, default_id)
    except (MalformedMessage, TamperedMessage) as error:
        _abandon_unreadable(message, default_id, error)
        return None

    arrived = now()
    if schedule.is_early(delivery.due_at, arrived):
        assert delivery.due_at is not None
        delay = max(1, schedule.delay_seconds(delivery.due_at, arrived, settings.SQS_MAX_DELAY))
        log.debug("delivery %s arrived before %s: put back for %d s", delivery.delivery_id, delivery.due_at, delay)
        return Again(delivery.to_message(), delay)

    if (redelivered or not audit.writes_succeeding()) and audit.already_delivered(delivery.delivery_id):
        log.info("delivery %s already succeeded: duplicate message dropped", delivery.delivery_id)
        return None

    return attempt(delivery, now)


def attempt(delivery: Delivery, now: Callable[[], datetime] = utcnow) -> Again | None:
    """Build, sign and POST one attempt; record it; say when the next one is due."""
    body = payload.encode(payload.build(delivery.lead, delivery.retry))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": settings.WEBHOOK_USER_AGENT,
        "webhook-id": delivery.delivery_id,
    }
    attempted_at = now()

    def record(
        status: str,
        error: str | None,
        response: sender.Response | None = None,
        address: str | None = None,
        next_retry_at: datetime | None = None,
    ) -> None:
        audit.record(
            audit.Attempt(
                delivery_id=delivery.delivery_id,
                lead_id=delivery.lead_id,
                webhook=delivery.webhook,
                url=delivery.url,
                retry=delivery.retry,
                status=status,
                http_status=response.http_status if response else None,
                error=error,
                request_headers=dict(headers),
                request_body=body.decode("utf-8"),
                response_body=response.body if response else None,
                duration_ms=response.duration_ms if response else 0.0,
                attempted_at=attempted_at,
                next_retry_at=next_retry_at,
                redelivery_of=delivery.redelivery_of,
                address=address,
            )
        )

    try:
        secrets = [secretbox.unseal(sealed) for sealed in delivery.secrets(attempted_at)]
        target = destination.check(delivery.url)
    except PermanentError as error:  # an undecryptable secret, a refused destination
        record(
            audit.ABANDONED, f"refused destination: {error}" if isinstance(error, RefusedDestination) else str(error)
        )
        return None
    except LookupError as error:  # DNS may come back: a failure like any other
        target, response = None, sender.Response(None, None, f"connection error: {error}", 0.0)
    headers.update(signature.headers(delivery.delivery_id, signature.unix_seconds(attempted_at), body, secrets))
    if target is not None:
        response = sender.post(target, body, headers)
    address = target.address if target else None
    if response.ok:
        record(audit.SUCCESS, None, response, address)
        return None

    first_failure = delivery.first_failure_at or now()
    due = schedule.next_retry_at(first_failure, delivery.retry, settings.WEBHOOK_RETRY_SCHEDULE)
    record(audit.ERROR if due else audit.ABANDONED, response.error, response, address, due)
    if due is None:
        return None
    following = replace(delivery, retry=delivery.retry + 1, first_failure_at=first_failure, due_at=due)
    return Again(following.to_message(), schedule.delay_seconds(due, now(), settings.SQS_MAX_DELAY))


def _abandon_unreadable(message: object, default_id: str, error: MalformedMessage | TamperedMessage) -> None:
    """A message we cannot read is recorded (as far as it can be) and never retried."""
    fields: Mapping[str, Any] = message if isinstance(message, Mapping) else {}
    lead = fields.get("lead") if isinstance(fields.get("lead"), Mapping) else {}
    audit.record(
        audit.Attempt(
            delivery_id=str(fields.get("delivery_id") or default_id)[:64],
            lead_id=str(lead.get("id", ""))[:64] if isinstance(lead, Mapping) else "",
            webhook=str(fields.get("webhook", ""))[:100],
            url=str(fields.get("url", ""))[:2048],
            retry=fields.get("retry", 0) if isinstance(fields.get("retry"), int) else 0,
            status=audit.ABANDONED,
            http_status=None,
            error=f"{'tampered' if isinstance(error, TamperedMessage) else 'malformed'} message: {error}",
            request_headers={},
            request_body="",
            response_body=None,
            duration_ms=0.0,
            attempted_at=utcnow(),
            next_retry_at=None,
        )
    )
