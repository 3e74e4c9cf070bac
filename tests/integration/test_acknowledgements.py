"""Acknowledgements made in a worker's event loop are deleted from SQS in batches (tasks.transport).

A channel created while a kombu Hub is the event loop of this thread acts as a worker's: its
acknowledgements wait (``ack_batch_window``) to be deleted together, 10 at once at most.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kombu.asynchronous import Hub, set_event_loop
from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from local.services import wait_for

OPTIONS = {"region": "us-east-1", "wait_time_seconds": 1, "visibility_timeout": 60, "ack_batch_window": 3600}


@pytest.fixture
def channel(moto: object) -> Iterator[Any]:
    """A channel whose event loop runs in this thread (it is never run: no timer fires)."""
    hub = Hub()
    hub._loop_thread = threading.get_ident()
    set_event_loop(hub)
    try:
        url = os.environ["BROKER_URL"]
        with Connection(url, transport="tasks.transport:Transport", transport_options=OPTIONS) as conn:
            yield conn.channel()
    finally:
        set_event_loop(None)


def loaded(channel: Any, count: int) -> tuple[str, list[Any]]:
    """A new queue with ``count`` messages, all received (unacknowledged)."""
    name = f"acks-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name), routing_key=name)(channel)
    queue.declare()
    for index in range(count):
        channel.basic_publish(channel.prepare_message(f"message {index}"), name, name)
    received: list[Any] = []
    while len(received) < count:
        message = wait_for(lambda: queue.get(no_ack=False), 10, "a message")
        received.append(message)
    return name, received


def in_queue(sqs: Any, name: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return int(found[names[0]]), int(found[names[1]])


def test_acknowledgements_wait_for_their_batch_and_are_deleted_when_the_channel_closes(channel: Any, sqs: Any) -> None:
    name, received = loaded(channel, 3)
    for message in received:
        message.ack()
    assert in_queue(sqs, name) == (0, 3)  # acknowledged, not deleted yet: their batch waits
    assert len(channel.qos._delivered) - len(channel.qos._dirty) == 3  # their prefetch slots still held

    channel.close()

    assert in_queue(sqs, name) == (0, 0)  # deleted, not given back to SQS


def test_the_tenth_acknowledgement_deletes_its_batch_at_once(channel: Any, sqs: Any) -> None:
    name, received = loaded(channel, 12)
    for message in received[:10]:
        message.ack()
    assert in_queue(sqs, name) == (0, 2)
    assert len(channel.qos._delivered) - len(channel.qos._dirty) == 2


def test_a_receipt_handle_sqs_refuses_releases_its_slot_and_raises_nothing(channel: Any, sqs: Any) -> None:
    name, received = loaded(channel, 2)
    received[0].delivery_info["sqs_message"]["ReceiptHandle"] = "not-a-receipt-handle"
    for message in received:
        message.ack()
    channel._flush_acks()

    assert len(channel.qos._delivered) - len(channel.qos._dirty) == 0
    assert in_queue(sqs, name) == (0, 1)  # the refused one comes back after its visibility timeout


def test_an_acknowledgement_from_another_thread_is_deleted_at_once(channel: Any, sqs: Any) -> None:
    name, [message] = loaded(channel, 1)
    acker = threading.Thread(target=message.ack)
    acker.start()
    acker.join()
    assert in_queue(sqs, name) == (0, 0)


def test_a_message_sqs_hands_out_a_second_time_is_marked_redelivered(channel: Any, sqs: Any) -> None:
    name, [first] = loaded(channel, 1)
    assert first.delivery_info["redelivered"] is False  # never handed out before

    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first.delivery_tag, VisibilityTimeout=0)  # not deleted
    queue = Queue(name, Exchange(name), routing_key=name)(channel)
    second = wait_for(lambda: queue.get(no_ack=False), 10, "the message again")

    assert second.delivery_info["redelivered"] is True
    assert second.body == first.body
