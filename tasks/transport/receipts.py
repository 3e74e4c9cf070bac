"""What SQS says of each message it hands out, given to the task where no publisher can forge it.

SQS records when it accepted a message (``SentTimestamp``, its own clock, in milliseconds) and
gives each accepted message its own ``MessageId``. Neither can be chosen by whoever publishes:
a message captured and re-published later gets a new id and a later time. The worker reads both
(the ``SentTimestamp`` system attribute is asked for on every receive) and sets them as the
Celery message headers ``sqs_message_id`` and ``sqs_sent_timestamp`` *after* receipt,
overriding whatever a publisher put under those names (removed when SQS did not say). A task
reads them as ``self.request.get("sqs_sent_timestamp")``: Celery turns message headers into
request attributes.

tasks.delivery compares the time SQS accepted a delivery message with the time the message was
sealed (its ``issued_at``, under its MAC): a message published legitimately is sealed moments
before it is sent; one accepted long after it was sealed was re-published (a replay).

Upstream: kombu asks SQS only for ``ApproximateReceiveCount`` unless the transport option
``fetch_message_attributes`` says more, and keeps what SQS answered in ``delivery_info``, which
Celery does not pass on to the task. Not a defect: a feature this project needs.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import SQS

#: The header names set on every received message (never trusted from the publisher).
MESSAGE_ID = "sqs_message_id"
SENT_TIMESTAMP = "sqs_sent_timestamp"


class BrokerReceipts(SQS.Channel):
    """kombu's SQS channel stamping SQS's own ``MessageId`` and ``SentTimestamp`` on each message."""

    @property
    def get_message_attributes(self) -> dict[str, Any]:
        """kombu's attributes to receive, with ``SentTimestamp`` among the system ones."""
        attributes: dict[str, Any] = dict(super().get_message_attributes)
        system = list(attributes.get("MessageSystemAttributeNames") or [])
        if not any(name.upper() == "ALL" for name in system) and "SentTimestamp" not in system:
            attributes["MessageSystemAttributeNames"] = sorted({*system, "SentTimestamp"})
        return attributes

    def _envelope_payload(self, payload: Any, raw_text: str, message: dict[str, Any], q_url: str) -> Any:
        """kombu's envelope, its headers carrying SQS's ``MessageId`` and ``SentTimestamp``."""
        enveloped = super()._envelope_payload(payload, raw_text, message, q_url)
        headers = enveloped.get("headers")
        if isinstance(headers, dict):  # a Celery message (another shape is refused by the consumer)
            headers.pop(MESSAGE_ID, None)
            headers.pop(SENT_TIMESTAMP, None)
            message_id = message.get("MessageId")
            sent = message.get("Attributes", {}).get("SentTimestamp")
            if isinstance(message_id, str):
                headers[MESSAGE_ID] = message_id
            if isinstance(sent, str) and sent.isdigit():
                headers[SENT_TIMESTAMP] = int(sent)
        return enveloped
