"""kombu's SQS transport with Celery's events and remote control (Flower, ``celery inspect``).

Selected with Celery's ``broker_transport = "tasks.transport:Transport"``; the broker URL keeps
``sqs://`` (kombu refuses an import path as a URL scheme). Written against kombu 5.7 (setup.cfg
pins the minor tested), no adjustment made at import time. One module per concern, each a mixin
of kombu's SQS channel, composed into ``Channel`` here:

- ``acks``: a worker's acknowledgements deleted in batches (DeleteMessageBatch, up to 10 within
  ``ack_batch_window``, 50 ms by default), no longer with one blocking DeleteMessage each;
- ``fanout``: events and remote control through SNS (transport option ``supports_fanout``),
  replies routed to the queue waiting for them;
- ``leases``: monitoring queues created with a retention and a lease, deleted on close, and
  ``sweep()`` for those of crashed processes;
- ``queues``: the work queues created with 14 days' retention, a message handed back hidden for
  the visibility timeout, and the queue's own maximum message size;
- ``receipts``: SQS's own ``MessageId`` and ``SentTimestamp`` set as headers of each message
  received, where the task reads them and no publisher can forge them;
- ``fixes``: kombu 5.7.0 defects, one mixin each, with the upstream report or the reason.

tests/unit/test_kombu_overrides.py records the signature, in the kombu tested, of every kombu
attribute these mixins override, and fails naming the method when a kombu release changes one.
"""

from __future__ import annotations

from tasks.transport.acks import BatchedAcks
from tasks.transport.fanout import FanoutAndReplies, FanoutTransport
from tasks.transport.fixes import (
    BoundedLongPoll,
    NoAckDeletes,
    QueueCacheEviction,
    RedeliveredFlag,
    UnreadableBodies,
)
from tasks.transport.leases import LEASE_TAG, TransientQueues, sweep
from tasks.transport.queues import WorkQueues
from tasks.transport.receipts import BrokerReceipts

__all__ = ["LEASE_TAG", "Channel", "Transport", "sweep"]


class Channel(
    BatchedAcks,
    FanoutAndReplies,
    TransientQueues,
    WorkQueues,
    NoAckDeletes,
    QueueCacheEviction,
    BoundedLongPoll,
    RedeliveredFlag,
    BrokerReceipts,
    UnreadableBodies,
):
    """kombu's SQS channel with every concern of this package.

    The order matters where two concerns override one method: ``close`` deletes pending
    acknowledgements before the transient queues; ``_create_queue`` gives a transient queue its
    own retention, any other the work queues'; ``basic_reject`` releases the prefetch slot
    (PromptPolling, through BatchedAcks) whatever WorkQueues does with the message.
    """

    #: kombu's is us-east-1, used when neither the ``region`` transport option nor boto3 gives
    #: one: a deployment elsewhere would silently put its queues (and the leads) there. None
    #: makes botocore refuse instead ("You must specify a region"); settings name SQS_REGION.
    default_region = None  # type: ignore[assignment]


class Transport(FanoutTransport):
    """kombu's SQS transport with this package's Channel (and ``fanout`` with ``supports_fanout``)."""

    Channel = Channel
