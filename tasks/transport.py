"""kombu's SQS transport with Celery's events and remote control (Flower, ``celery inspect``).

Selected with Celery's ``broker_transport = "tasks.transport:Transport"``; the broker URL keeps
``sqs://`` (kombu refuses an import path as a URL scheme). Written against kombu 5.7.0, every
adjustment in this one module and none made at import time, so that it could be offered upstream.

Out of the box, Celery on SQS carries neither events nor remote control: kombu's SQS transport
declares no ``fanout`` exchange type (Celery then skips the worker's remote-control step), Celery's
event exchange is a ``topic`` one, and replies are routed with bindings that exist only in the
process waiting for them. With the transport option ``supports_fanout`` true, this transport:

- declares ``fanout``, so broadcasts (exchange ``celery.pidbox``) go through kombu 5.7's SNS
  fanout to every worker's ``<hostname>-celery-pidbox`` queue;
- declares the exchanges named in ``fanout_topic_exchanges`` (default ``celeryev``) as fanout:
  every event receiver binds ``#``, so a fanout loses nothing. Publishing an event is best
  effort: an SNS failure is logged and the event dropped, never the task or the task's publish;
- routes a reply (a direct publish that no local binding matches) to the existing queue named
  ``<routing key>.<exchange>`` (kombu's pidbox) or ``<routing key>`` (the rpc result backend),
  never creating a queue.

Queues declared ``auto_delete`` (event receivers ``celeryev-<uuid>``, reply queues
``<oid>-reply-celery-pidbox``, workers' ``<hostname>-celery-pidbox``) are "transient": created
with ``MessageRetentionPeriod`` from the queue's ``message_ttl`` (at least 60 s, SQS's minimum)
and a lease tag (``kombu-lease-until``, epoch seconds) renewed while they are polled. They are
deleted, with their SNS subscription, when the channel closes or the process exits, except a
worker's pidbox queue: its name is the worker's, and SQS refuses to create a queue again within
60 s of deleting it, so a quick restart would fail. ``sweep()`` deletes transient queues whose
lease has run out (crashed processes, workers gone for good) and the SNS subscriptions left
without a queue.

Also fixed, whether or not fanout is on (kombu 5.7.0 defects):

- a no-ack consumer without an event loop (Flower, ``celery events``, ``celery inspect``)
  crashed deleting each message with the pycurl client, which needs the loop;
- ``_delete`` evicted the queue name instead of the SQS name from the URL cache, so a queue
  declared again after its deletion was used at its old, dead URL;
- a long poll outlasted ``drain_events(timeout)``: ``celery inspect`` waited the full
  ``wait_time_seconds`` after the last reply;
- a worker whose prefetch slots were all held polled again only after ``polling_interval``
  (1 s): a worker ran at most ``prefetch_count`` tasks a second. It now polls as soon as an
  acknowledgement frees a slot.

And, for a worker's throughput and SQS bill: its acknowledgements are deleted in batches
(DeleteMessageBatch, up to 10 within ``ack_batch_window``, 50 ms by default), no longer with
one blocking DeleteMessage each in the event loop (see ``Channel.basic_ack``). A message's
``delivery_info["redelivered"]`` says whether SQS handed it out before (``ApproximateReceiveCount``).
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

from botocore.exceptions import BotoCoreError, ClientError
from kombu.exceptions import KombuError
from kombu.transport import SQS, virtual
from kombu.transport.SQS.exceptions import DoesNotExistQueueException, UndefinedQueueException

logger = logging.getLogger(__name__)

LEASE_TAG = "kombu-lease-until"
#: SQS's own bounds of MessageRetentionPeriod, in seconds.
RETENTION_RANGE = (60, 1_209_600)
#: Error codes of an SQS queue that does not exist (query and JSON protocols).
MISSING_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
#: The transient queues a sweep looks at (SQS names, after queue_name_prefix).
SWEPT_PREFIXES = ("celeryev-",)
SWEPT_SUFFIXES = ("-pidbox",)
#: Most messages a batch request of SQS takes.
SQS_BATCH = 10
#: Errors of a receipt handle no longer valid: nothing left to delete (as kombu's basic_ack).
STALE_RECEIPT = frozenset({"ReceiptHandleIsInvalid", "InvalidParameterValue"})
#: The fanout exchanges whose SNS subscriptions a sweep tidies.
SWEPT_EXCHANGES = ("celeryev", "celery.pidbox")


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class Channel(SQS.Channel):
    """kombu's SQS channel, with events, remote control and transient queues (module docstring)."""

    default_transient_queue_lease = 3600
    default_ack_batch_window = 0.05

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._drain_timeout: float | None = None
        #: transient queues declared here: queue name => message TTL in seconds (or None)
        self._transient: dict[str, float | None] = {}
        #: SQS name => monotonic time its lease was last renewed
        self._lease_renewed: dict[str, float] = {}
        #: queues that replies were routed to without a local binding
        self._routed: set[str] = set()
        #: SQS names of the transient queues deleted here: never created again by this channel
        self._deleted: set[str] = set()
        #: acknowledgements not yet deleted: (queue, queue URL) => [(delivery tag, receipt handle)]
        self._pending_acks: dict[tuple[str | None, str], list[tuple[Any, str]]] = {}
        self._acks_flush: Any = None  # the timer of the next flush
        #: queues whose polling waits for a free prefetch slot => their fallback timer
        self._parked: dict[str, Any] = {}
        self._parked_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    # --- options ------------------------------------------------------------------------

    @property
    def fanout_topic_exchanges(self) -> frozenset[str]:
        """Topic exchanges declared as fanout when ``supports_fanout`` is on."""
        return frozenset(self.transport_options.get("fanout_topic_exchanges", ("celeryev",)))

    @property
    def ack_batch_window(self) -> float:
        """Seconds an acknowledgement waits for others to be deleted with (0: those of one turn of the loop)."""
        return float(self.transport_options.get("ack_batch_window", self.default_ack_batch_window))

    @property
    def transient_queue_lease(self) -> int:
        """Seconds a transient queue stays unswept without being polled."""
        return int(self.transport_options.get("transient_queue_lease", self.default_transient_queue_lease))

    # --- events: the topic exchange as fanout, publishing best effort -------------------

    def exchange_declare(self, exchange: str | None = None, type: str = "direct", *args: Any, **kwargs: Any) -> None:
        """Declare the event exchange (a topic one) as fanout: SNS then carries events.

        Every event receiver binds ``#``, so a fanout delivers exactly what the topic would.
        """
        if self.supports_fanout and type == "topic" and exchange in self.fanout_topic_exchanges:
            type = "fanout"
        super().exchange_declare(exchange, type, *args, **kwargs)

    def _put_fanout(self, exchange: str, message: dict[str, Any], routing_key: str, **kwargs: Any) -> None:
        """Publish to SNS; for an event exchange, log and drop on failure.

        Events are monitoring: an SNS outage must not fail a task, nor a task's publish (Celery
        sends ``task-sent`` right after publishing the task, in the same call).
        """
        if exchange not in self.fanout_topic_exchanges:
            super()._put_fanout(exchange, message, routing_key, **kwargs)
            return
        try:
            super()._put_fanout(exchange, message, routing_key, **kwargs)
        except (ClientError, BotoCoreError, OSError, KombuError) as error:
            logger.warning("event not published to SNS (dropped): %r", error)

    # --- replies: route an unbound direct publish to an existing queue ------------------

    def _lookup(self, exchange: str, routing_key: str, default: str | None = None) -> list[str]:
        """Route a direct publish with no local binding to the queue waiting for it, if it exists.

        kombu's pidbox replies to exchange ``reply.celery.pidbox`` with the caller's oid as the
        routing key, into the caller's queue ``<oid>.reply.celery.pidbox``; the rpc backend's
        queue is named after the routing key. The binding lives only in the caller's process,
        so the replier finds none and the reply was dropped. A queue is never created here.
        """
        queues: list[str] = super()._lookup(exchange, routing_key, default)
        if queues or not exchange or not routing_key or self.typeof(exchange).type != "direct":
            return queues
        for candidate in (f"{routing_key}.{exchange}", routing_key):
            try:
                self._resolve_queue_url(candidate)
            except (DoesNotExistQueueException, UndefinedQueueException):
                continue
            self._routed.add(candidate)
            return [candidate]
        return []

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        """Send; a routed reply whose queue is gone meanwhile is dropped, never re-created."""
        if queue not in self._routed:
            super()._put(queue, message, **kwargs)
            return
        try:
            self._resolve_queue_url(queue)  # _put would create a queue missing from the cache
            super()._put(queue, message, **kwargs)
        except DoesNotExistQueueException:
            logger.debug("reply to %s dropped: the queue is gone", queue)
        except ClientError as error:
            if _error_code(error) not in MISSING_QUEUE:
                raise
            self._queue_cache.pop(self.canonical_queue_name(queue), None)
            logger.debug("reply to %s dropped: the queue is gone", queue)

    # --- kombu 5.7.0 defects ------------------------------------------------------------

    def _schedule_queue(self, queue: str) -> None:
        """Poll ``queue`` now or, while every prefetch slot is held, as soon as one is released.

        kombu tried again only after ``polling_interval`` (1 s by default): a worker whose tasks
        outlast a turn of the event loop ran at most ``prefetch_count`` tasks per second (8
        deliveries per second with 8 threads). The queue is parked instead; ``basic_ack`` and
        ``basic_reject`` (run by the pool's threads, with late acknowledgement) wake the event
        loop for it. The ``polling_interval`` timer stays, as a fallback: a prefetch count
        raised by Celery frees slots without an acknowledgement.
        """
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

    # --- acknowledgements: deleted from SQS in batches -----------------------------------

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        """Delete the message from SQS: in the worker, batched with the acknowledgements of the
        next ``ack_batch_window`` seconds (10 make a batch at once; none waits while every
        prefetch slot is held, as the next receive waits for one).

        Celery acknowledges in the worker's event loop (the pool's threads hand their
        acknowledgements over to it), and kombu deleted each message there with a blocking
        DeleteMessage, one round trip each, during which the loop received nothing. Here up to
        10 are deleted by one DeleteMessageBatch. An acknowledgement comes after its task
        returned (late acknowledgement: the audit record is written by then); the message's
        prefetch slot is released once its batch is answered. A message whose delete failed,
        or that was not deleted yet when the worker was killed, comes back after its visibility
        timeout, and is dropped as a duplicate (the audit has its success), as after a kill
        between a task's end and its acknowledgement. Outside an event loop (no hub, or
        another thread) kombu's own DeleteMessage is used.
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

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        try:
            super().basic_reject(delivery_tag, requeue)
        finally:
            self._slot_released()

    def _delete_message(self, queue_name: str, message: dict[str, Any]) -> None:
        """Delete a message received on a no-ack queue with the blocking client.

        kombu used the pycurl client, which only works inside an event loop: Flower, ``celery
        events`` and ``celery inspect`` have none and crashed on their first message. Should
        the delete fail, the message comes back after the visibility timeout (a duplicate event
        or reply, both tolerated by their readers).
        """
        queue_url = self._new_queue(queue_name)
        try:
            self.sqs(queue=queue_name).delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        except ClientError as error:
            logger.warning("could not delete a no-ack message from %s: %r", queue_name, error)

    def _envelope_payload(self, payload: Any, raw_text: str, message: dict[str, Any], q_url: str) -> Any:
        """kombu's envelope, with ``delivery_info["redelivered"]`` as AMQP brokers set it (kombu's
        SQS left it unset: false): true when SQS handed the message out before, i.e. its
        ``ApproximateReceiveCount`` (which kombu asks for) is above 1, or unknown."""
        enveloped = super()._envelope_payload(payload, raw_text, message, q_url)
        count = message.get("Attributes", {}).get("ApproximateReceiveCount")
        enveloped["properties"]["delivery_info"]["redelivered"] = count is None or int(count) > 1
        return enveloped

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        """Delete the queue and evict its SQS name from the URL cache (kombu evicted the AMQP name)."""
        try:
            super()._delete(queue, *args, **kwargs)
        finally:
            self._queue_cache.pop(self.canonical_queue_name(queue), None)

    def drain_events(self, timeout: float | None = None, callback: Any = None, **kwargs: Any) -> None:
        """Bound the long poll by ``timeout``: ``inspect`` returns 1 s after the last reply, not 10."""
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

    # --- transient queues: retention, lease, deletion on close --------------------------

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
        if not self.closed and self._pending_acks:
            self._flush_acks()  # else kombu would give the messages back to SQS, to be dropped as duplicates
        if not self.closed and self.connection is not None:
            self.delete_transient_queues()
        super().close()


class Transport(SQS.Transport):
    """kombu's SQS transport; with ``supports_fanout`` it declares the ``fanout`` exchange type.

    Celery starts a worker's remote-control step only on a transport that implements fanout.
    """

    Channel = Channel

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        if client.transport_options.get("supports_fanout"):
            base = type(self).implements
            self.implements = base.extend(exchange_type=base.exchange_type | {"fanout"})


# --- exit and sweep -----------------------------------------------------------------------

_open_channels: weakref.WeakSet[Channel] = weakref.WeakSet()
_exit_lock = threading.Lock()
_exit_registered = False


def _delete_at_exit(channel: Channel) -> None:
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


def sweep(channel: Channel, now: float | None = None, exchanges: Iterable[str] = SWEPT_EXCHANGES) -> list[str]:
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
                if _error_code(error) not in MISSING_QUEUE:  # another sweep was first
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
