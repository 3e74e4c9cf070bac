"""One error tree for the whole product.

    WebhookError
    ├── ConfigurationError      a setting is missing or malformed (raised at start)
    ├── InvalidInput            bad input from a user: a lead, a subscriber, a CLI option
    ├── DispatchFailed          the broker failed mid-dispatch: says which deliveries were enqueued
    ├── AuditError              the audit trail cannot be used as asked (no genesis checkpoint…)
    │   └── TrailBroken         an altered, inserted or missing audit record or checkpoint
    ├── DeliveryOutcome         how a delivery task ended, raised after its record for monitors (Flower)
    │   ├── DeliveryFailed      abandoned, or its message refused: a FAILURE, its message acknowledged
    │   └── DeliveryRetried     published again (a retry, a wait, a hold): why, and when it is due
    ├── RetryableError          a later attempt may succeed: recorded as an error, retried on schedule
    │   └── UnresolvedName      the URL's host name does not resolve (DNS may come back)
    └── PermanentError          retrying cannot help: record it and acknowledge the message
        ├── MalformedMessage    the task's argument is not a delivery we understand
        ├── TamperedMessage     the message's MAC does not match its content
        ├── ReplayedMessage     an authentic message published again long after it was sealed
        ├── UndecryptableSecret the secret cannot be decrypted with any configured key
        └── RefusedDestination  the URL is not http(s) or reaches a non-public address

Every message is meant for a person: it names the field and the allowed values.
"""

from __future__ import annotations


class WebhookError(Exception):
    """Base of every error raised by this project."""


class ConfigurationError(WebhookError):
    """A setting read from the environment is missing or malformed."""


class InvalidInput(WebhookError):
    """Input from a user (a lead, a subscriber, an option) is refused."""


class DispatchFailed(WebhookError):
    """The broker failed during a dispatch: ``enqueued`` lists the deliveries that were
    enqueued before it did; the others were not (and are recorded as not enqueued)."""

    def __init__(self, message: str, *, enqueued: list[str], total: int) -> None:
        self.enqueued, self.total = enqueued, total
        super().__init__(f"{message}: {len(enqueued)} of {total} deliveries enqueued, the others were not")


class AuditError(WebhookError):
    """The audit trail cannot be read, sealed or pruned as asked."""


class TrailBroken(AuditError):
    """The audit trail does not verify: a record or a checkpoint was altered, inserted or removed."""


class DeliveryOutcome(WebhookError):
    """How a delivery task ended, when not with a success: raised by the task (tasks.application)
    once the outcome is recorded, for monitors (Flower, the worker's log) to show it with its
    reason. Never a bug: shown without a traceback, its reason alone."""

    def __repr__(self) -> str:  # what Celery's events and log show of an exception
        return str(self)


class DeliveryFailed(DeliveryOutcome):
    """The delivery ended without success ("HTTP 401 after 11 attempts"): Flower counts a
    FAILURE; its message is acknowledged like a success's (task_acks_on_failure_or_timeout)."""


class DeliveryRetried(DeliveryOutcome):
    """The delivery was published again ("HTTP 503; retry 2 due …"): the reason of Celery's retry."""


class RetryableError(WebhookError):
    """A failure that a later attempt may not meet."""


class UnresolvedName(RetryableError):
    """The URL's host name does not resolve now (a later attempt looks it up again)."""


class PermanentError(WebhookError):
    """A failure that no retry can fix: it is recorded and the message acknowledged."""


class MalformedMessage(PermanentError):
    """The task's argument is not a delivery this worker understands."""


class UndecryptableSecret(PermanentError):
    """The subscriber's secret cannot be decrypted with the configured key."""


class TamperedMessage(PermanentError):
    """The message was changed after the producer sealed it (its MAC does not match)."""


class ReplayedMessage(PermanentError):
    """An authentic message that SQS accepted long after it was sealed (a captured message
    published again), or a late copy of a delivery that already succeeded."""


class RefusedDestination(PermanentError):
    """The URL is malformed or resolves to an address webhooks may not reach (SSRF)."""
