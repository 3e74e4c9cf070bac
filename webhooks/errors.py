"""One error tree for the whole product.

    WebhookError
    ├── ConfigurationError      a setting is missing or malformed (raised at start)
    ├── InvalidInput            bad input from a user: a lead, a subscriber, a CLI option
    ├── AuditError              the audit trail cannot be used as asked (no genesis checkpoint…)
    │   └── TrailBroken         an altered, inserted or missing audit record or checkpoint
    ├── RetryableError          a delivery attempt failed, a later attempt may succeed
    │   └── DeliveryFailed      non-2xx, timeout, connection error, redirect
    └── PermanentError          retrying cannot help: record it and acknowledge the message
        ├── MalformedMessage    the task's argument is not a delivery we understand
        ├── TamperedMessage     the message's MAC does not match its content
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


class AuditError(WebhookError):
    """The audit trail cannot be read, sealed or pruned as asked."""


class TrailBroken(AuditError):
    """The audit trail does not verify: a record or a checkpoint was altered, inserted or removed."""


class RetryableError(WebhookError):
    """A failure that a later attempt may not meet."""


class DeliveryFailed(RetryableError):
    """The subscriber did not answer 2xx in time."""


class PermanentError(WebhookError):
    """A failure that no retry can fix: it is recorded and the message acknowledged."""


class MalformedMessage(PermanentError):
    """The task's argument is not a delivery this worker understands."""


class UndecryptableSecret(PermanentError):
    """The subscriber's secret cannot be decrypted with the configured key."""


class TamperedMessage(PermanentError):
    """The message was changed after the producer sealed it (its MAC does not match)."""


class RefusedDestination(PermanentError):
    """The URL is malformed or resolves to an address webhooks may not reach (SSRF)."""
