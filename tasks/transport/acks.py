"""Batched acknowledgements: a worker's messages are deleted from SQS 10 at a time.

Celery acknowledges in the worker's event loop (the pool's threads hand their acknowledgements
over to it), and kombu deleted each message there with a blocking DeleteMessage, one round trip
each, during which the loop received nothing. Here up to 10 are deleted by one
DeleteMessageBatch, within ``ack_batch_window`` (50 ms by default). Upstream: no report found;
it is an optimisation (fewer requests on the SQS bill, a loop free to receive), not a fix.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kombu.transport import virtual

from tasks.transport.aws import SQS_BATCH, STALE_RECEIPT
from tasks.transport.fixes import PromptPolling

logger = logging.getLogger(__name__)


class BatchedAcks(PromptPolling):
    """kombu's SQS channel whose acknowledgements, in a worker's event loop, are deleted in batches.

    Built on PromptPolling: a batch answered releases its prefetch slots, which wakes a queue
    parked for want of one.
    """

    default_ack_batch_window = 0.05

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: acknowledgements not yet deleted: (queue, queue URL) => [(delivery tag, receipt handle)]
        self._pending_acks: dict[tuple[str | None, str], list[tuple[Any, str]]] = {}
        self._acks_flush: Any = None  # the timer of the next flush
        super().__init__(*args, **kwargs)

    @property
    def ack_batch_window(self) -> float:
        """Seconds an acknowledgement waits for others to be deleted with (0: those of one turn of the loop)."""
        return float(self.transport_options.get("ack_batch_window", self.default_ack_batch_window))

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        """Delete the message from SQS: in the worker, batched with the acknowledgements of the
        next ``ack_batch_window`` seconds (10 make a batch at once; none waits while every
        prefetch slot is held, as the next receive waits for one).

        An acknowledgement comes after its task returned (late acknowledgement: the audit record
        is written by then); the message's prefetch slot is released once its batch is answered.
        A message whose delete failed, or that was not deleted yet when the worker was killed,
        comes back after its visibility timeout, and is dropped as a duplicate (the audit has its
        success), as after a kill between a task's end and its acknowledgement. Outside an event
        loop (no hub, or another thread) kombu's own DeleteMessage is used.
        """
        if multiple or self.hub is None or getattr(self.hub, "_loop_thread", None) != threading.get_ident():
            try:
                super().basic_ack(delivery_tag, multiple)
            finally:
                self._slot_released()
            return
        try:
            info = self.qos.get(delivery_tag).delivery_info
            receipt, url = info["sqs_message"]["ReceiptHandle"], info["sqs_queue"]
        except KeyError:  # not received from SQS here: kombu's path
            super().basic_ack(delivery_tag, multiple)
            self._slot_released()
            return
        key = (self.canonical_queue_name(info["routing_key"]) if "routing_key" in info else None, url)
        batch = self._pending_acks.setdefault(key, [])
        batch.append((delivery_tag, receipt))
        if self._parked:  # every prefetch slot is held: waiting would hold up the next receive
            self._flush_acks()
        elif len(batch) >= SQS_BATCH:
            del self._pending_acks[key]
            try:
                self._delete_batch(*key, batch)
            finally:
                self._slot_released()
        elif self._acks_flush is None:
            self._acks_flush = self.hub.call_later(self.ack_batch_window, self._flush_acks)

    def _flush_acks(self) -> None:
        """Delete the messages acknowledged and not deleted yet, 10 per request."""
        if self._acks_flush is not None:
            self._acks_flush.cancel()
            self._acks_flush = None
        pending, self._pending_acks = self._pending_acks, {}
        try:
            for (queue, url), acks in pending.items():
                for start in range(0, len(acks), SQS_BATCH):
                    self._delete_batch(queue, url, acks[start : start + SQS_BATCH])
        finally:
            self._slot_released()

    def _delete_batch(self, queue: str | None, url: str, acks: list[tuple[Any, str]]) -> None:
        entries = [{"Id": str(index), "ReceiptHandle": receipt} for index, (_, receipt) in enumerate(acks)]
        failed: dict[str, str] = {}
        try:
            answer = self.sqs(queue=queue).delete_message_batch(QueueUrl=url, Entries=entries)
        except Exception as error:  # SQS unreachable, access denied…: the messages come back later
            logger.error("could not delete %d acknowledged message(s) from %s: %r", len(acks), url, error)
            failed = {entry["Id"]: "" for entry in entries}
        else:
            for entry in answer.get("Failed", []):
                failed[entry["Id"]] = entry.get("Code", "")
                logger.warning("could not delete an acknowledged message from %s: %s", url, entry)
        for index, (delivery_tag, _) in enumerate(acks):
            code = failed.get(str(index))
            if code is None or code in STALE_RECEIPT:
                virtual.Channel.basic_ack(self, delivery_tag)  # release the slot (kombu's would delete)
            else:
                virtual.Channel.basic_reject(self, delivery_tag)  # left in SQS, forgotten here

    def close(self) -> None:
        if not self.closed and self._pending_acks:
            self._flush_acks()  # else kombu would give the messages back to SQS, to be dropped as duplicates
        super().close()
