"""The work queues (every queue but the monitoring ones): retention, handed-back messages, size limit.

- Created with ``MessageRetentionPeriod`` 14 days (transport option ``message_retention_period``),
  SQS's longest: kombu set only ``VisibilityTimeout``, so SQS's default of 4 days applied and a
  backlog older than that (workers down over a long weekend) was deleted without a word. A queue
  that exists already keeps its own; ``sqs-creation-attributes`` still override.
- A message handed back (``basic_reject(requeue=True)``: Celery's ``Reject(requeue=True)``) comes
  back after ``requeue_delay`` (default: the visibility timeout), as if its worker had died. kombu
  hid it for ``wait_time_seconds`` (the long-poll wait, 10 s): while the failure lasts (SQS
  refusing the task's republish), the subscriber would be POSTed every 10 s. Messages given back
  when a channel closes (a worker's warm shutdown) still take kombu's path, to come back soon.
- ``max_message_bytes(queue)``: the queue's own ``MaximumMessageSize``, which the producer reads
  instead of a setting that could disagree with it (ElasticMQ caps at 256 KiB, SQS at 1 MiB).

Upstream: no report found of either kombu behaviour.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from kombu.transport import SQS, virtual

logger = logging.getLogger(__name__)


class WorkQueues(SQS.Channel):
    """kombu's SQS channel whose queues keep messages 14 days, and whose handed-back messages wait."""

    #: SQS's longest retention, 14 days.
    default_message_retention_period = 1_209_600

    @property
    def message_retention_period(self) -> int:
        """Seconds a message is kept by a queue this channel creates (60 to 1209600)."""
        return int(self.transport_options.get("message_retention_period", self.default_message_retention_period))

    @property
    def requeue_delay(self) -> int:
        """Seconds a message handed back stays hidden (default: the visibility timeout)."""
        delay = self.transport_options.get("requeue_delay")
        return int(self.visibility_timeout if delay is None else delay)

    def _create_queue(self, queue_name: str, attributes: dict[str, str]) -> Any:
        """Create a work queue with the retention of ``message_retention_period``."""
        attributes.setdefault("MessageRetentionPeriod", str(self.message_retention_period))
        return super()._create_queue(queue_name, attributes)

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        """Hand a message back to SQS for ``requeue_delay`` seconds; other rejects are kombu's."""
        if not requeue:
            super().basic_reject(delivery_tag, requeue)
            return
        try:
            info = self.qos.get(delivery_tag).delivery_info
            receipt, url = info["sqs_message"]["ReceiptHandle"], info["sqs_queue"]
        except KeyError:  # not received from SQS here: kombu's path
            super().basic_reject(delivery_tag, requeue)
            return
        queue = self.canonical_queue_name(info["routing_key"]) if "routing_key" in info else None
        try:
            self.sqs(queue=queue).change_message_visibility(
                QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=self.requeue_delay
            )
        except (ClientError, BotoCoreError) as error:  # it comes back after its visibility timeout anyway
            logger.warning("could not hand a message back to %s: %r", url, error)
        virtual.Channel.basic_reject(self, delivery_tag)  # forgotten here: SQS has it

    def max_message_bytes(self, queue: str) -> int:
        """The queue's ``MaximumMessageSize`` (the queue is created if missing, as a publish would)."""
        url = self._new_queue(queue)
        answer = self.sqs(queue=self.canonical_queue_name(queue)).get_queue_attributes(
            QueueUrl=url, AttributeNames=["MaximumMessageSize"]
        )
        return int(answer["Attributes"]["MaximumMessageSize"])
