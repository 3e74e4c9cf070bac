"""What the transport makes of SQS queues on AWS's terms (tasks.transport.queues and the settings):
14 days' retention, a handed-back message hidden for the visibility timeout, one name prefix per
environment for queues, topics and the sweep."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from local.leads import a_lead, unique
from local.services import wait_for
from tasks.transport import LEASE_TAG, sweep
from tests.integration.conftest import queue_bodies, run_cli

FOURTEEN_DAYS = "1209600"


def connect(**options: Any) -> Connection:
    return Connection(
        os.environ["BROKER_URL"],
        transport="tasks.transport:Transport",
        transport_options={"region": "us-east-1", "wait_time_seconds": 1, **options},
    )


def attribute(sqs: Any, name: str, attribute: str) -> str:
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[attribute])["Attributes"][attribute])


def test_the_queue_the_producer_creates_keeps_messages_fourteen_days(sqs, subscribe) -> None:
    subscription = subscribe("http://127.0.0.1:9/never")
    queue = unique("retained")
    done = run_cli("dispatch", input=json.dumps(a_lead(subscription.shop)), env={"SQS_QUEUE": queue})
    assert done.returncode == 0, done.stderr

    assert attribute(sqs, queue, "MessageRetentionPeriod") == FOURTEEN_DAYS  # SQS's default is 4 days
    assert attribute(sqs, queue, "VisibilityTimeout") == os.environ["SQS_VISIBILITY_TIMEOUT"]


def test_a_monitoring_queue_keeps_its_own_short_retention(sqs, moto) -> None:
    name = f"celeryev-{uuid.uuid4().hex[:8]}"
    with connect() as conn:
        queue = Queue(name, Exchange(name), routing_key=name, auto_delete=True, message_ttl=5)(conn.default_channel)
        queue.declare()
        assert attribute(sqs, name, "MessageRetentionPeriod") == "60"  # SQS's minimum, from its 5 s TTL
        queue.delete()


@pytest.fixture
def channel(moto: object) -> Iterator[Any]:
    with connect(visibility_timeout=60) as conn:
        yield conn.channel()


def test_a_message_handed_back_stays_hidden_for_the_visibility_timeout_not_a_long_poll(channel, sqs) -> None:
    name = f"requeued-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name), routing_key=name)(channel)
    queue.declare()
    channel.basic_publish(channel.prepare_message("handed back"), name, name)
    message = wait_for(lambda: queue.get(no_ack=False), 10, "the message")

    message.requeue()  # Celery's Reject(requeue=True): kombu's basic_reject(requeue=True)

    assert len(channel.qos._delivered) - len(channel.qos._dirty) == 0  # forgotten here, its slot free
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    # kombu hid it for wait_time_seconds (1 s here): it would be received within these 3 s
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=3).get("Messages") is None
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert found["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"  # in SQS, hidden, not lost


def test_the_prefix_starts_the_queue_and_topic_names_and_limits_the_sweep(sqs, moto) -> None:
    import boto3

    prefix, other = f"stg{uuid.uuid4().hex[:6]}-", f"prd{uuid.uuid4().hex[:6]}-"
    expired = str(int(time.time()) - 1)
    ours, theirs = f"{prefix}celeryev-old", f"{other}celeryev-old"
    for name in (ours, theirs):
        sqs.create_queue(QueueName=name, tags={LEASE_TAG: expired})

    with connect(queue_name_prefix=prefix, supports_fanout=True) as conn:
        channel = conn.default_channel
        channel.exchange_declare("celeryev", "topic")  # a fanout topic once declared
        channel.basic_publish(channel.prepare_message("event"), "celeryev", "worker.heartbeat")
        deleted = sweep(channel)

    sns = boto3.client("sns", endpoint_url=moto.url, region_name="us-east-1")
    topics = {topic["TopicArn"].rsplit(":", 1)[-1] for topic in sns.list_topics()["Topics"]}
    assert f"{prefix}celeryev" in topics
    assert deleted == [ours]
    assert theirs in {url.rsplit("/", 1)[-1] for url in sqs.list_queues(QueueNamePrefix=other)["QueueUrls"]}
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=theirs)["QueueUrl"])


def test_the_producer_publishes_to_the_prefixed_queue(sqs, subscribe) -> None:
    subscription = subscribe("http://127.0.0.1:9/never")
    prefix, queue = f"env{uuid.uuid4().hex[:6]}-", unique("prefixed")
    done = run_cli(
        "dispatch", input=json.dumps(a_lead(subscription.shop)), env={"SQS_QUEUE": queue, "SQS_QUEUE_PREFIX": prefix}
    )
    assert done.returncode == 0, done.stderr
    assert len(queue_bodies(sqs, prefix + queue)) == 1
    assert queue_bodies(sqs, queue) == []
