"""Fixes of kombu 5.7.0's SQS channel, whether or not fanout is on: one mixin per defect.

Each names the upstream report where one was found, else why none is cited. They are kept apart
from the features (acks, fanout, leases) so that each can be offered upstream, or dropped once a
kombu release fixes it (tests/unit/test_kombu_overrides.py fails when kombu changes what these
override).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from botocore.exceptions import ClientError
from kombu.transport import SQS

logger = logging.getLogger(__name__)


class PromptPolling(SQS.Channel):
    """A worker whose prefetch slots are all held polls again as soon as one is released.

    kombu tried again only after ``polling_interval`` (1 s by default): a worker whose tasks
    outlast a turn of the event loop ran at most ``prefetch_count`` tasks per second (8
    deliveries per second with 8 threads). The queue is parked instead; ``basic_ack`` and
    ``basic_reject`` (run by the pool's threads, with late acknowledgement) wake the event loop
    for it. The ``polling_interval`` timer stays, as a fallback: a prefetch count raised by
    Celery frees slots without an acknowledgement.

    Upstream: no report of this exact cause was found; the symptom (a worker slower than its
    tasks on SQS) is reported in celery/celery#6352 and celery/kombu#1783.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: queues whose polling waits for a free prefetch slot => their fallback timer
        self._parked: dict[str, Any] = {}
        self._parked_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def _schedule_queue(self, queue: str) -> None:
        """Poll ``queue`` now or, while every prefetch slot is held, as soon as one is released."""
        if queue in self._active_queues and self.hub is not None:
            with self._parked_lock:
                if not self.qos.can_consume():
                    if queue not in self._parked:
                        interval = self.connection.polling_interval or 1
                        self._parked[queue] = self.hub.call_later(interval, self._unpark, queue)
                    return
        super()._schedule_queue(queue)

    def _unpark(self, queue: str) -> None:
        """Poll a parked queue again, from the event loop (thread-safe: the hub's call_soon wakes it)."""
        with self._parked_lock:
            fallback = self._parked.pop(queue, None)
        if fallback is None:
            return
        fallback.cancel()  # a no-op when the fallback itself is firing
        if self.hub is not None:
            self.hub.call_soon(self._schedule_queue, queue)

    def _slot_released(self) -> None:
        with self._parked_lock:  # after a check that saw no free slot, the queue is parked
            parked = list(self._parked)
        for queue in parked:
            self._unpark(queue)

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        try:
            super().basic_reject(delivery_tag, requeue)
        finally:
            self._slot_released()


class NoAckDeletes(SQS.Channel):
    """A no-ack consumer without an event loop (Flower, ``celery events``, ``celery inspect``)
    deletes its messages with the blocking client.

    kombu used the pycurl client, which only works inside an event loop: those crashed on
    their first message. Upstream: the same root cause (the async client needs a hub) as
    celery/kombu#746; no report of the no-ack path itself was found.
    """

    def _delete_message(self, queue_name: str, message: dict[str, Any]) -> None:
        """Delete a message received on a no-ack queue; should that fail, the message comes back
        after the visibility timeout (a duplicate event or reply, both tolerated by their readers)."""
        queue_url = self._new_queue(queue_name)
        try:
            self.sqs(queue=queue_name).delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        except ClientError as error:
            logger.warning("could not delete a no-ack message from %s: %r", queue_name, error)


class QueueCacheEviction(SQS.Channel):
    """A queue deleted and declared again is created again, not used at its old, dead URL.

    kombu's ``_delete`` evicted the queue's AMQP name from the URL cache, which is keyed by the
    SQS name (prefixed, dots replaced). Upstream: no report found; a one-line bug, seen when
    a queue whose name has a dot is deleted and declared again (tests/integration/test_flower.py).
    """

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        """Delete the queue and evict its SQS name from the URL cache."""
        try:
            super()._delete(queue, *args, **kwargs)
        finally:
            self._queue_cache.pop(self.canonical_queue_name(queue), None)


class BoundedLongPoll(SQS.Channel):
    """A blocking long poll ends with ``drain_events(timeout)``: ``celery inspect`` returns 1 s
    after the last reply, not a full ``wait_time_seconds`` (10 s) later.

    Upstream: no report found; kombu passes the timeout to its poll loop but asks SQS for the
    configured wait regardless.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._drain_timeout: float | None = None
        super().__init__(*args, **kwargs)

    def drain_events(self, timeout: float | None = None, callback: Any = None, **kwargs: Any) -> None:
        """Bound the long poll by ``timeout``."""
        self._drain_timeout = timeout
        try:
            super().drain_events(timeout=timeout, callback=callback, **kwargs)
        finally:
            self._drain_timeout = None

    @property
    def wait_time_seconds(self) -> int:
        """The configured long-poll wait, cut to a ``drain_events`` timeout in progress."""
        configured = int(self.transport_options.get("wait_time_seconds", self.default_wait_time_seconds))
        if self._drain_timeout is None:
            return configured
        return max(0, min(configured, int(self._drain_timeout)))


class RedeliveredFlag(SQS.Channel):
    """``delivery_info["redelivered"]`` as AMQP brokers set it: whether SQS handed the message out before.

    kombu's SQS channel left it unset (false), though it asks SQS for ``ApproximateReceiveCount``.
    The task reads it to skip the duplicate check on a first delivery. Upstream: the count was
    asked for in celery/kombu#1022 (done for the back-off policy), never mapped to the flag.
    """

    def _envelope_payload(self, payload: Any, raw_text: str, message: dict[str, Any], q_url: str) -> Any:
        """kombu's envelope, redelivered when ``ApproximateReceiveCount`` is above 1, or unknown."""
        enveloped = super()._envelope_payload(payload, raw_text, message, q_url)
        count = message.get("Attributes", {}).get("ApproximateReceiveCount")
        enveloped["properties"]["delivery_info"]["redelivered"] = count is None or int(count) > 1
        return enveloped


class UnreadableBodies(SQS.Channel):
    """A message body kombu cannot read, or an envelope of another shape than kombu's, reaches the
    consumer as an unknown message (recorded and deleted there: tasks.consumer), instead of
    stopping the worker.

    kombu decodes each SQS body in the worker's event loop, outside any handler: JSON nested deeper
    than Python's recursion limit (``RecursionError``), or a kombu-like envelope whose
    ``properties``, ``delivery_info`` or ``headers`` are not objects, whose body does not decode
    under its ``body_encoding``, raised there, and the worker exited ("Unrecoverable error"). SQS
    then gave the message to the next worker, and so on: one message anyone may send stopped the
    fleet. A compressed message (the ``compression`` header) is refused the same way: this
    project never compresses, and kombu would decompress it whole in memory (1 MiB of bzip2 can
    hold gigabytes). Upstream: no report found of either.
    """

    def _prepare_json_payload(self, text: Any) -> Any:
        """kombu's envelope of ``text``, or ``{}`` (then kombu takes the body as raw text)."""
        try:
            payload = super()._prepare_json_payload(text)
        except (RecursionError, ValueError, TypeError):
            return {}
        return payload if self._readable(payload) else {}

    def _readable(self, payload: dict[str, Any]) -> bool:
        """Whether kombu can build its Message from ``payload`` without raising."""
        if "properties" not in payload:
            return True  # not an envelope: kombu keeps the raw text as the body
        properties, headers, body = payload["properties"], payload.get("headers"), payload.get("body")
        if not isinstance(properties, dict) or not isinstance(properties.get("delivery_info", {}), dict):
            return False
        if headers is not None and (not isinstance(headers, dict) or headers.get("compression")):
            return False
        if body is not None and not isinstance(body, str):
            return False
        encoding = properties.get("body_encoding")
        if body and encoding and str(encoding).lower() != "utf-8":
            try:
                self.codecs[encoding].decode(body)
            except Exception:  # an unknown encoding (KeyError), a body that is not of it
                return False
        return True
