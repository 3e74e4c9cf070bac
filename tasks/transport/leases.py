"""Monitoring queues: created with a retention and a lease, deleted on close, swept once the lease runs out.

Queues declared ``auto_delete`` (event receivers ``celeryev-<uuid>``, reply queues
``<oid>-reply-celery-pidbox``, workers' ``<hostname>-celery-pidbox``) are "transient": created
with ``MessageRetentionPeriod`` from the queue's ``message_ttl`` (at least 60 s, SQS's minimum)
and a lease tag (``kombu-lease-until``, epoch seconds) renewed while they are polled. They are
deleted, with their SNS subscription, when the channel closes or the process exits, except a
worker's pidbox queue: its name is the worker's, and SQS refuses to create a queue again within
60 s of deleting it, so a quick restart would fail. ``sweep()`` deletes transient queues whose
lease has run out (crashed processes, workers gone for good) and the SNS subscriptions left
without a queue. SQS has no auto-delete: without this, each Flower or ``celery events`` run left
a queue (and an SNS subscription) filling forever. Upstream: no report found.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
import weakref
from collections.abc import Iterable
from queue import Empty
from typing import Any

from botocore.exceptions import ClientError
from kombu.transport import SQS
from kombu.transport.SQS.exceptions import DoesNotExistQueueException

from tasks.transport.aws import MISSING_QUEUE, RETENTION_RANGE, error_code

logger = logging.getLogger(__name__)

LEASE_TAG = "kombu-lease-until"
#: The transient queues a sweep looks at (SQS names, after queue_name_prefix).
SWEPT_PREFIXES = ("celeryev-",)
SWEPT_SUFFIXES = ("-pidbox",)
#: The fanout exchanges whose SNS subscriptions a sweep tidies.
SWEPT_EXCHANGES = ("celeryev", "celery.pidbox")


class TransientQueues(SQS.Channel):
    """kombu's SQS channel whose ``auto_delete`` queues are leased, and deleted on close."""

    default_transient_queue_lease = 3600

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: transient queues declared here: queue name => message TTL in seconds (or None)
        self._transient: dict[str, float | None] = {}
        #: SQS name => monotonic time its lease was last renewed
        self._lease_renewed: dict[str, float] = {}
        #: SQS names of the transient queues deleted here: never created again by this channel
        self._deleted: set[str] = set()
        super().__init__(*args, **kwargs)

    @property
    def transient_queue_lease(self) -> int:
        """Seconds a transient queue stays unswept without being polled."""
        return int(self.transport_options.get("transient_queue_lease", self.default_transient_queue_lease))

    def prepare_queue_arguments(self, arguments: dict[str, Any] | None, **kwargs: Any) -> dict[str, Any]:
        """Keep the queue's ``message_ttl`` (as AMQP's ``x-message-ttl``, ms) for its creation."""
        prepared = dict(arguments or {})
        if kwargs.get("message_ttl") is not None:
            prepared.setdefault("x-message-ttl", int(float(kwargs["message_ttl"]) * 1000))
        return prepared

    def _new_queue(self, queue: str, **kwargs: Any) -> str:
        """Remember ``auto_delete`` queues as transient (created with a lease, deleted on close)."""
        if kwargs.get("auto_delete") and not self.predefined_queues:
            ttl = (kwargs.get("arguments") or {}).get("x-message-ttl")
            self._transient[queue] = None if ttl is None else ttl / 1000
            _delete_at_exit(self)
        url: str = super()._new_queue(queue, **kwargs)
        return url

    def _transient_name(self, sqs_name: str) -> str | None:
        for queue in self._transient:
            if self.canonical_queue_name(queue) == sqs_name:
                return queue
        return None

    def _create_queue(self, queue_name: str, attributes: dict[str, str]) -> Any:
        """Create a transient queue with its retention and lease tag in the one CreateQueue.

        A transient queue deleted on close is not created again: a consumer thread still
        polling it (Flower's event thread at exit) would otherwise leave a new one behind.
        """
        if queue_name in self._deleted:
            raise DoesNotExistQueueException(f"Queue {queue_name!r} was deleted when its channel closed")
        queue = self._transient_name(queue_name)
        if queue is None:
            return super()._create_queue(queue_name, attributes)
        ttl = self._transient[queue]
        if ttl is not None:
            low, high = RETENTION_RANGE
            attributes["MessageRetentionPeriod"] = str(min(max(math.ceil(ttl), low), high))
        attributes.update(self.transport_options.get("sqs-creation-attributes") or {})
        tags = {**(self.transport_options.get("queue_tags") or {}), LEASE_TAG: self._lease_until()}
        response = self.sqs(queue=queue_name).create_queue(QueueName=queue_name, Attributes=attributes, tags=tags)
        self._lease_renewed[queue_name] = time.monotonic()
        return response

    def _lease_until(self) -> str:
        return str(int(time.time()) + self.transient_queue_lease)

    def _renew_lease(self, queue: str) -> None:
        """Push a transient queue's lease forward, at most twice per lease, while it is used."""
        if queue not in self._transient:
            return
        name = self.canonical_queue_name(queue)
        now = time.monotonic()
        renewed = self._lease_renewed.get(name)
        lease = self.transient_queue_lease
        if renewed is not None and now - renewed < lease / 2:
            return
        if renewed is not None and now - renewed >= lease:
            self._queue_cache.pop(name, None)  # a sweep may have deleted it: found again, or created
        try:
            url = self._new_queue(queue)
            self.sqs(queue=name).tag_queue(QueueUrl=url, Tags={LEASE_TAG: self._lease_until()})
        except ClientError as error:
            logger.warning("could not renew the lease of queue %s: %r", name, error)
        self._lease_renewed[name] = now

    def basic_consume(self, queue: str, *args: Any, **kwargs: Any) -> Any:
        self._renew_lease(queue)
        return super().basic_consume(queue, *args, **kwargs)

    def _get_bulk(self, queue: str, *args: Any, **kwargs: Any) -> Any:
        if self.canonical_queue_name(queue) in self._deleted:
            raise Empty()  # deleted on close; a consumer thread may still be polling (Flower at exit)
        self._renew_lease(queue)
        return super()._get_bulk(queue, *args, **kwargs)

    def _get_async(self, queue: str, *args: Any, **kwargs: Any) -> Any:
        self._renew_lease(queue)
        return super()._get_async(queue, *args, **kwargs)

    def after_reply_message_received(self, queue: str) -> None:
        """Keep the reply queue for the next call; it is deleted when the channel closes.

        kombu deletes it after every ``inspect``/``control`` call, but the next call from the
        same thread uses the same name, and SQS refuses to create a queue within 60 s of
        deleting one of that name (Flower inspects every few seconds).
        """

    def _is_pidbox_node_queue(self, queue: str) -> bool:
        """A worker's own pidbox queue: bound to the broadcast exchange ``<namespace>.pidbox``."""
        return any(
            binding.exchange.endswith(".pidbox") and self.typeof(binding.exchange).type == "fanout"
            for binding in self.state.queue_bindings(queue)
        )

    def delete_transient_queues(self) -> None:
        """Delete the transient queues declared here and their SNS subscriptions (never raises).

        A worker's pidbox queue is kept: it is reused by the next worker of that name.
        """
        for queue in list(self._transient):
            if self._is_pidbox_node_queue(queue):
                continue
            self._transient.pop(queue, None)
            name = self.canonical_queue_name(queue)
            self._deleted.add(name)
            url = self._queue_cache.pop(name, None)
            try:
                if url is not None:
                    # short timeouts, no retries: this runs on the way out
                    self._new_release_client(self.sqs(queue=name)).delete_queue(QueueUrl=url)
                for binding in list(self.state.queue_bindings(queue)):
                    if self._exchange_is_fanout(binding.exchange):
                        self.fanout.subscriptions.unsubscribe_queue(queue_name=queue, exchange_name=binding.exchange)
                self.state.queue_bindings_delete(queue)
            except Exception as error:  # the process is closing: report, never raise
                logger.warning("could not delete transient queue %s: %r", name, error)

    def close(self) -> None:
        if not self.closed and self.connection is not None:
            self.delete_transient_queues()
        super().close()


# --- exit and sweep -----------------------------------------------------------------------

_open_channels: weakref.WeakSet[TransientQueues] = weakref.WeakSet()
_exit_lock = threading.Lock()
_exit_registered = False


def _delete_at_exit(channel: TransientQueues) -> None:
    """Delete this channel's transient queues at exit: pooled connections are never closed."""
    global _exit_registered
    with _exit_lock:
        _open_channels.add(channel)
        if not _exit_registered:
            atexit.register(_delete_all_transient_queues)
            _exit_registered = True


def _delete_all_transient_queues() -> None:
    for channel in list(_open_channels):
        if not channel.closed and channel.connection is not None:
            channel.delete_transient_queues()


def _is_swept(name: str, prefix: str) -> bool:
    if not name.startswith(prefix):
        return False
    rest = name[len(prefix) :]
    return rest.startswith(SWEPT_PREFIXES) or rest.endswith(SWEPT_SUFFIXES)


def sweep(channel: SQS.Channel, now: float | None = None, exchanges: Iterable[str] = SWEPT_EXCHANGES) -> list[str]:
    """Delete transient queues whose lease has run out, then SNS subscriptions left without a queue.

    For processes that could not clean up (killed, crashed) and workers gone for good. Safe to
    run from several processes at once. Returns the SQS names of the queues deleted.
    """
    now = time.time() if now is None else now
    client = channel.sqs()
    prefix = channel.queue_name_prefix
    deleted: list[str] = []
    for page in client.get_paginator("list_queues").paginate(QueueNamePrefix=prefix):
        for url in page.get("QueueUrls", []):
            name = url.rsplit("/", 1)[-1]
            if not _is_swept(name, prefix):
                continue
            try:
                until = client.list_queue_tags(QueueUrl=url).get("Tags", {}).get(LEASE_TAG)
                if until is None or float(until) > now:
                    continue
                client.delete_queue(QueueUrl=url)
            except ClientError as error:
                if error_code(error) not in MISSING_QUEUE:  # another sweep was first
                    logger.warning("sweep: could not check or delete queue %s: %r", name, error)
                continue
            channel._queue_cache.pop(name, None)
            deleted.append(name)
            logger.info("sweep: deleted queue %s (lease ran out at %s)", name, until)
    if channel.supports_fanout:
        for exchange in exchanges:
            channel.exchange_declare(exchange, "fanout")  # kombu tidies only declared fanouts
            channel.remove_stale_sns_subscriptions(exchange)
    return deleted
