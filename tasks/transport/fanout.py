"""Fanout and reply routing: Celery's events and remote control through SNS.

Out of the box, Celery on SQS carries neither events nor remote control (celery/celery#1291,
mher/flower#65): kombu's SQS transport declares no ``fanout`` exchange type (Celery then skips the
worker's remote-control step), Celery's event exchange is a ``topic`` one, and replies are routed
with bindings that exist only in the process waiting for them. With the transport option
``supports_fanout`` true:

- ``fanout`` is declared (``Transport``), so broadcasts (exchange ``celery.pidbox``) go through
  kombu 5.7's SNS fanout to every worker's ``<hostname>-celery-pidbox`` queue;
- the exchanges named in ``fanout_topic_exchanges`` (default ``celeryev``) are declared as
  fanout: every event receiver binds ``#``, so a fanout loses nothing. Publishing an event is
  best effort: an SNS failure drops the event, never the task or its publish; the first one
  is logged as an error saying what it means (a missing permission, most likely), once per
  process, the others at DEBUG (a heartbeat every 2 s would fill the log);
- a topic's ARN is asked of SNS (CreateTopic) once per process, not once per channel as kombu
  does (a worker opens one per publishing thread, Flower one per inspect: ten at start);
- a reply (a direct publish that no local binding matches) goes to the existing queue named
  ``<routing key>.<exchange>`` (kombu's pidbox) or ``<routing key>`` (the rpc result backend),
  never creating a queue.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, ClassVar

from botocore.exceptions import BotoCoreError, ClientError
from kombu.exceptions import KombuError
from kombu.transport import SQS
from kombu.transport.SQS.exceptions import DoesNotExistQueueException, UndefinedQueueException
from kombu.transport.SQS.SNS import SNS as SnsFanout

from tasks.transport.aws import MISSING_QUEUE, error_code

logger = logging.getLogger(__name__)

#: Whether this process said already that its events cannot be published (said once).
_dropping = threading.Event()


def _event_dropped(exchange: str, error: Exception) -> None:
    """An event SNS refused: the first time, say what it means; afterwards, at DEBUG."""
    if _dropping.is_set():
        logger.debug("event not published to SNS (dropped): %r", error)
        return
    _dropping.set()
    if isinstance(error, ClientError):
        said = error.response.get("Error", {}).get("Message") or error_code(error)
        cause = f"AWS refused {error.operation_name}: {said}"
    else:
        cause = f"{type(error).__name__}: {error}"
    logger.error(
        "task events cannot be published to SNS (%s): events are dropped, so Flower and `celery events` "
        "show nothing of this process; grant sns:CreateTopic and sns:Publish on the topic %r "
        "(deploy/iam/), or set WORKER_EVENTS=0 where no Flower watches. Said once: later failures "
        "are logged at DEBUG",
        cause,
        exchange,
    )


class SharedTopics(SnsFanout):
    """kombu's SNS fanout, its topics' ARNs shared by every channel of the process.

    kombu asks SNS for a topic's ARN (CreateTopic, logging "Created SNS topic") once per
    channel; here once per process, endpoint, region and topic.
    """

    _arns: ClassVar[dict[tuple[str | None, str | None, str], str]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def _create_sns_topic(self, exchange_name: str) -> str:
        key = (self.channel.endpoint_url, self.channel.region, self.channel.canonical_queue_name(exchange_name))
        with SharedTopics._shared_lock:
            arn = SharedTopics._arns.get(key)
            if arn is None:
                arn = SharedTopics._arns[key] = super()._create_sns_topic(exchange_name)
        return arn


class FanoutAndReplies(SQS.Channel):
    """kombu's SQS channel with events as an SNS fanout and replies routed to the waiting queue."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: queues that replies were routed to without a local binding
        self._routed: set[str] = set()
        super().__init__(*args, **kwargs)

    @property
    def fanout_topic_exchanges(self) -> frozenset[str]:
        """Topic exchanges declared as fanout when ``supports_fanout`` is on."""
        return frozenset(self.transport_options.get("fanout_topic_exchanges", ("celeryev",)))

    @property
    def fanout(self) -> SnsFanout:
        """kombu's SNS fanout, with the topics' ARNs shared by the process's channels."""
        if not self._fanout:
            self._fanout = SharedTopics(self)
        return self._fanout

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
            _event_dropped(exchange, error)

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
            if error_code(error) not in MISSING_QUEUE:
                raise
            self._queue_cache.pop(self.canonical_queue_name(queue), None)
            logger.debug("reply to %s dropped: the queue is gone", queue)


class FanoutTransport(SQS.Transport):
    """kombu's SQS transport; with ``supports_fanout`` it declares the ``fanout`` exchange type.

    Celery starts a worker's remote-control step only on a transport that implements fanout.
    """

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        if client.transport_options.get("supports_fanout"):
            base = type(self).implements
            self.implements = base.extend(exchange_type=base.exchange_type | {"fanout"})
