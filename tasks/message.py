"""The queue message of one delivery: the single argument of ``deliver_webhook``.

``DeliveryMessage`` declares every field once: its name, its type and what it means.
Reading a message (``DeliveryMessage.read``), writing one (``DeliveryMessage.sealed``),
the fields allowed and the summary shown by monitors all follow from that declaration.

A message names its subscriber; it carries neither its URL nor its secret: each attempt
reads the subscriber's current state (``tasks.directory``), so an update, a disable, a
rotation or a deletion reaches the deliveries already in the queue. It is authenticated
(``mac``: webhooks.secretbox) and dated (``issued_at``) under that MAC, so a message
changed in transit is refused, and one re-published long after it was built is known.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from records import deliveries
from webhooks import secretbox
from webhooks.clock import utcnow
from webhooks.errors import MalformedMessage


@dataclass(frozen=True)
class DeliveryMessage:
    """One delivery of one lead to one subscriber, as it travels through SQS."""

    delivery_id: str  # the delivery; also the Celery task id
    subscriber_id: int  # the subscriber (webhook_configs.id): its current state decides each attempt
    webhook: str  # the subscriber's name (for the records and the logs)
    lead: Mapping[str, Any]  # the payload's body without "retry"
    webhook_id: str = ""  # the webhook-id header: the delivery id, or for a redelivery the original's webhook-id
    dispatched_at: datetime | None = None  # when the delivery was dispatched (cancel --since)
    issued_at: datetime | None = None  # when this message was built (under the MAC: a replay is known by it)
    retry: int = 0  # attempts already made (body.retry of this attempt)
    first_failure_at: datetime | None = None  # the first failure, anchor of the retry schedule
    due_at: datetime | None = None  # not to be attempted before this time (a retry, a hop of a long wait)
    held_since: datetime | None = None  # when a hold (open circuit, in-flight limit) began to keep it back
    redelivery_of: str | None = None  # the delivery this one redelivers (webhooks redeliver, recover, --again)
    crashes: int = 0  # unexpected failures of its processing so far (a poison message ends abandoned)

    # Fields of messages written before subscribers were read at each attempt: still accepted,
    # ignored (the subscriber's current URL and secrets win; it is found by name).
    LEGACY: ClassVar[frozenset[str]] = frozenset({"url", "secret", "previous_secret", "previous_secret_until"})

    def __post_init__(self) -> None:
        if not self.webhook_id:
            object.__setattr__(self, "webhook_id", self.delivery_id)

    @classmethod
    def fields(cls) -> tuple[dataclasses.Field[Any], ...]:
        return dataclasses.fields(cls)

    @classmethod
    def read(cls, message: object) -> DeliveryMessage:
        """The message checked: authentic (TamperedMessage otherwise), every field of its type
        (MalformedMessage naming the field otherwise)."""
        if not isinstance(message, Mapping):
            raise MalformedMessage(f"the delivery must be an object, not {type(message).__name__}")
        secretbox.check_authentic(message)
        allowed = {each.name for each in cls.fields()} | {"mac"} | cls.LEGACY
        unknown = set(message) - allowed
        if unknown:
            raise MalformedMessage(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed - cls.LEGACY)}")
        values: dict[str, Any] = {}
        for each in cls.fields():
            if each.name in message and message[each.name] is not None:
                values[each.name] = _decode(each, message[each.name])
            elif each.default is dataclasses.MISSING and each.name != "subscriber_id":
                raise MalformedMessage(f"field {each.name!r} is required")
        if "subscriber_id" not in values:
            if not set(message) & cls.LEGACY:
                raise MalformedMessage("field 'subscriber_id' is required")
            values["subscriber_id"] = 0  # a message of the earlier form: its subscriber is found by name
        if not isinstance(values["lead"].get("created_at"), str):
            raise MalformedMessage("field 'lead' must be an object with a 'created_at' string")
        if not values["delivery_id"] or not values["webhook"]:
            raise MalformedMessage("fields 'delivery_id' and 'webhook' must be non-empty strings")
        return cls(**values)

    def sealed(self) -> dict[str, Any]:
        """The message as published: JSON values, issued now, authenticated."""
        content: dict[str, Any] = {}
        for each in self.fields():
            value = getattr(self, each.name)
            if each.name == "issued_at":
                value = utcnow()
            if value is None or (value == each.default and each.name not in _ALWAYS):
                continue
            content[each.name] = _encode(value)
        return secretbox.authenticate(content)

    def but(self, **changes: Any) -> DeliveryMessage:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def row(self, subscriber_id: int | None = None) -> deliveries.New:
        """The platform's row of this delivery (records.deliveries)."""
        return deliveries.New(
            self.delivery_id,
            self.webhook_id,
            self.lead_id,
            subscriber_id or self.subscriber_id,
            self.webhook,
            self.redelivery_of,
        )

    @property
    def lead_id(self) -> str:
        return str(self.lead.get("id", ""))


# Written even at their default value: what a reader of the queue expects to find.
_ALWAYS = {"retry"}


def _decode(each: dataclasses.Field[Any], raw: Any) -> Any:
    kind = str(each.type)
    if kind.startswith("str"):
        if not isinstance(raw, str):
            raise MalformedMessage(f"field {each.name!r} must be a string")
        return raw
    if kind == "int":
        if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
            raise MalformedMessage(f"field {each.name!r} must be a whole number >= 0")
        return raw
    if kind.startswith("datetime"):
        try:
            moment = datetime.fromisoformat(raw)
        except (TypeError, ValueError):
            raise MalformedMessage(f"field {each.name!r} must be an ISO 8601 time, not {raw!r}") from None
        return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    if kind.startswith("Mapping"):
        if not isinstance(raw, Mapping):
            raise MalformedMessage(f"field {each.name!r} must be an object")
        return raw
    raise AssertionError(f"no decoder for {each.name}: {kind}")  # a new field's type: add it here


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat() + "+00:00"
    if isinstance(value, Mapping):
        return dict(value)
    return value


def summary(message: object) -> str:
    """What monitors (Flower, Celery's logs, ``inspect``) show of a message instead of its
    arguments: the ids, never the lead's personal data."""
    fields: Mapping[str, Any] = message if isinstance(message, Mapping) else {}
    lead = fields.get("lead")
    return repr(
        {
            "delivery_id": fields.get("delivery_id"),
            "webhook": fields.get("webhook"),
            "lead_id": lead.get("id") if isinstance(lead, Mapping) else None,
            "retry": fields.get("retry", 0),
            "due_at": fields.get("due_at"),
        }
    )
