"""Celery's consumer, recording every message it removes from the queue without a delivery.

Celery's consumer deletes a message it cannot make a task of, and only logs it: a body that does
not decode (``on_decode_error``: JSON nested beyond the decoder's recursion limit, a content type
not accepted), a message of no known form (``on_unknown_message``), a task no worker registers
(``on_unknown_task``), a message it finds invalid (``on_invalid_task``). A lead could so leave
the queue without a trace. Here each is first recorded ``refused`` under SQS's own MessageId
(``sqs:<id>``, tasks.delivery.record_refused) with the reason, the body's size and SHA-256, and
what its headers claimed (escaped): never the body, whose claims are not facts. Then Celery
removes it as before. Should the record fail (the audit database refusing a write; one out of
reach is spooled), the message is handed back to SQS instead and comes back after the
visibility timeout: nothing leaves the queue unrecorded.

Any other error while Celery reads a message (a form it does not expect, such as a task name
that is not a string) propagated to the event loop and stopped the worker; the next worker then
met the same message. Here it is recorded and the message removed the same way.

A ``deliver_webhook`` task that fails (its call itself: a message sent with other arguments)
is acknowledged by Celery, so deleted: it is recorded here too (``task_failure``).

Selected by the Celery setting ``worker_consumer`` (tasks.application).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

from celery import signals
from celery.worker.consumer import Consumer
from vine import promise

from tasks.delivery import Arrival, broker_id, record_refused
from webhooks.errors import DeliveryOutcome
from webhooks.text import printable

logger = logging.getLogger(__name__)

#: Set on a kombu message once its refusal is recorded (never recorded twice).
_RECORDED = "_webhooks_refusal_recorded"


class RecordingConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer; a message it removes without running a task is recorded first."""

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        if self._recorded(message, f"undecodable message refused: {_error(exc)}"):
            super().on_decode_error(message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        if self._recorded(message, "message of an unknown form refused (not a Celery task message)"):
            super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        if self._recorded(message, f"message of an unknown task refused: {_error(exc)}"):
            super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        if self._recorded(message, f"invalid task message refused: {_error(exc)}"):
            super().on_invalid_task(body, message, exc)

    def create_task_handler(self, promise: Any = promise) -> Callable[[Any], Any]:
        """Celery's handler of each received message, any error of which is a refusal, not a crash."""
        handle = super().create_task_handler(promise)

        def on_task_received(message: Any) -> Any:
            try:
                return handle(message)
            except Exception as error:  # a form Celery does not expect: it would stop the worker
                logger.error("a message Celery could not read is refused: %s", _error(error))
                recorded = self._recorded(message, f"unreadable task message refused: {_error(error)}")
                if recorded and not message.acknowledged:
                    message.reject_log_error(logger, self.connection_errors)  # deleted from SQS
                return None

        return on_task_received

    def _recorded(self, message: Any, reason: str) -> bool:
        """Record the refusal of ``message``; False (and the message handed back) if that fails."""
        if getattr(message, _RECORDED, False):
            return True
        identity, described = describe(message)
        try:
            record_refused(identity, f"{reason}; {described}")
        except Exception:
            logger.exception("the refusal of message %s could not be recorded: it is handed back to SQS", identity)
            try:
                message.reject(requeue=True)  # comes back after the visibility timeout
            except Exception:
                logger.exception("message %s could not be handed back; SQS gives it back anyway", identity)
            return False
        setattr(message, _RECORDED, True)
        return True


def describe(message: Any) -> tuple[str, str]:
    """The broker id of a kombu message (``sqs:<MessageId>``, else its body's hash) and what can
    be said of it without trusting it: the raw body's size and SHA-256, the headers' claims."""
    info = getattr(message, "delivery_info", None)
    sqs = info.get("sqs_message") if isinstance(info, dict) else None
    raw = sqs.get("Body") if isinstance(sqs, dict) else getattr(message, "body", b"")
    body = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw or b"")
    digest = hashlib.sha256(body).hexdigest()
    message_id = sqs.get("MessageId") if isinstance(sqs, dict) else None
    identity = broker_id(message_id) if isinstance(message_id, str) and message_id else f"body-sha256:{digest[:40]}"
    headers = getattr(message, "headers", None)
    claims = headers if isinstance(headers, dict) else {}
    claimed = ", ".join(
        f"{name}={printable(repr(claims[name]))[:120]}" for name in ("task", "id", "kwargsrepr") if name in claims
    )
    return identity, f"body {len(body)} bytes, sha256 {digest}" + (f"; it claimed {claimed}" if claimed else "")


def _error(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error)[:300]}"


@signals.task_failure.connect  # type: ignore[untyped-decorator]
def _record_failed_delivery(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    """A ``deliver_webhook`` that raised (Celery then deletes its message): recorded refused under
    the broker's id. tasks.application's task catches every error of a delivery's processing,
    so this is a call that failed (a message of other arguments) or the audit itself failing."""
    if getattr(sender, "name", None) != "tasks.deliver_webhook" or isinstance(exception, DeliveryOutcome):
        return  # (a delivery's outcome raised for monitors was recorded already)
    arrival = Arrival.of(sender.request)
    try:
        record_refused(
            arrival.broker_id,
            f"task failed, its message deleted: {_error(exception) if exception else 'unknown error'}"
            f"; it claimed task_id={printable(repr(arrival.task_id))[:120]}",
        )
    except Exception:
        logger.exception("the failure of task %s could not be recorded", arrival.task_id)
