"""Messages a worker removes without a delivery (issue 16, item 4): each leaves an audit record.

Whatever anyone with SendMessage puts in the queue — a body that is not a Celery message, JSON
nested beyond the decoder's recursion limit (the whole body, or a task's arguments), an
envelope of another shape, an unknown task, a compressed body — the worker records it
``refused`` under SQS's MessageId (``sqs:<id>``), deletes it, and goes on delivering.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.leads import a_lead, unique
from local.recorder import Receiver
from local.services import Worker, mysql, wait_for
from tasks import deliver_webhook
from tests.integration.conftest import attempts, message_to, refused_claiming, subscriber_at
from tests.support.factories import a_message

QUEUE = unique("undecodable")


@pytest.fixture(scope="module")
def worker_of_its_own(database: str, moto: object, logs: Path) -> Iterator[Worker]:
    process = Worker(logs / f"{QUEUE}.log", {"SQS_QUEUE": QUEUE})
    yield process
    process.stop()


def queue_url(sqs: Any) -> str:
    url: str = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    return url


def envelope(task_body: bytes, **headers: Any) -> str:
    """An SQS body as kombu writes a Celery task message: base64 of the envelope, itself holding
    the base64 of ``task_body``; ``headers`` change Celery's (None removes one)."""
    celery = {"lang": "py", "task": "tasks.deliver_webhook", "id": str(uuid.uuid4()), "argsrepr": "()"}
    celery = {name: value for name, value in {**celery, **headers}.items() if value is not None}
    message = {
        "body": base64.b64encode(task_body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": celery,
        "properties": {
            "delivery_tag": str(uuid.uuid4()),
            "body_encoding": "base64",
            "delivery_info": {"exchange": "", "routing_key": QUEUE},
        },
    }
    return base64.b64encode(json.dumps(message).encode()).decode()


DEEP = "[" * 5000 + "]" * 5000  # beyond Python's recursion limit, so beyond any JSON decoder here
ARGS = b"[[], {}, {}]"
BODIES = {
    "not a Celery message": ("garbage \x1b]52;c;aGk=\x07 not json", "message of an unknown form refused"),
    "JSON nested 5000 deep": (DEEP, "message of an unknown form refused"),
    "a task's arguments nested 5000 deep": (
        envelope(b'[[], {"delivery": ' + DEEP.encode() + b"}, {}]"),
        "undecodable message refused: DecodeError: maximum recursion depth exceeded",
    ),
    "not UTF-8": (base64.b64encode(b"\xff\xfe\x00 garbage").decode(), "message of an unknown form refused"),
    "properties that are not an object": (json.dumps({"properties": "x"}), "message of an unknown form refused"),
    "headers that are not an object": (
        json.dumps({"properties": {"delivery_info": {}}, "headers": [1], "body": "e30="}),
        "message of an unknown form refused",
    ),
    "a body that is not base64": (
        json.dumps({"properties": {"body_encoding": "base64"}, "body": "abc"}),
        "message of an unknown form refused",
    ),
    "a compressed body": (
        json.dumps({"properties": {}, "headers": {"compression": "application/x-bz2"}, "body": "QlpoOTFBWSZTWQ=="}),
        "message of an unknown form refused",
    ),
    "a task name that is not a string": (
        envelope(ARGS, task=["tasks.deliver_webhook"]),
        "unreadable task message refused: TypeError",
    ),
    "arguments that are not a list": (envelope(b"5"), "unreadable task message refused: TypeError"),
    "no task id": (envelope(ARGS, id=None), "unreadable task message refused: KeyError: 'id'"),
    "an unknown task": (envelope(ARGS, task="tasks.\x1b[2Junknown"), "message of an unknown task refused"),
    "an invalid ETA": (envelope(ARGS, eta="not a date"), "invalid task message refused: InvalidTaskError"),
}


@pytest.mark.parametrize("name", list(BODIES))
def test_a_message_the_worker_cannot_deliver_is_recorded_refused_under_its_sqs_id_and_deleted(
    worker_of_its_own: Worker, sqs: Any, receiver: Receiver, name: str
) -> None:
    body, reason = BODIES[name]
    message_id = sqs.send_message(QueueUrl=queue_url(sqs), MessageBody=body)["MessageId"]

    [row] = wait_for(lambda: attempts(f"sqs:{message_id}"), 30, f"the record of {name}")
    assert row["status"] == "refused"
    assert row["error"].startswith(reason), row["error"]
    assert f"body {len(body.encode())} bytes, sha256 {hashlib.sha256(body.encode()).hexdigest()}" in row["error"]
    assert "\x1b" not in row["error"]  # what a message claims is quoted escaped, never raw
    assert (row["lead_id"], row["webhook"], row["request_body"]) == ("", "", "")
    wait_for(lambda: in_queue(sqs) == (0, 0), 30, "the message deleted")

    # The worker goes on delivering.
    path = f"/ok/{unique('after')}"
    sent = message_to(subscriber_at(receiver.url(path)))
    deliver_webhook.apply_async(kwargs={"delivery": sent}, queue=QUEUE)
    wait_for(lambda: receiver.to(path), 30, "a delivery after it")
    assert worker_of_its_own.process.poll() is None


def test_a_task_call_that_fails_is_recorded_refused_before_celery_deletes_its_message(
    worker_of_its_own: Worker, sqs: Any
) -> None:
    message_id = sqs.send_message(QueueUrl=queue_url(sqs), MessageBody=envelope(ARGS))["MessageId"]

    [row] = wait_for(lambda: attempts(f"sqs:{message_id}"), 30, "the record")
    assert row["status"] == "refused"
    assert row["error"].startswith(
        "task failed, its message deleted: TypeError: deliver_webhook() missing 1 required positional argument"
    )
    wait_for(lambda: in_queue(sqs) == (0, 0), 30, "the message deleted")


def test_a_lead_nested_too_deep_for_the_worker_to_decode_is_recorded_not_lost(
    worker_of_its_own: Worker, receiver: Receiver, sqs: Any
) -> None:
    # What dispatch accepted before its nesting limit: extra_data some 960 levels deep. This
    # process encodes it (its recursion limit raised for that); the worker cannot decode it.
    extra: dict[str, Any] = {}
    for _ in range(960):
        extra = {"x": extra}
    path = f"/ok/{unique('deep')}"
    subscription = subscriber_at(receiver.url(path))
    lead = {**a_lead(subscription.shop), "extra_data": extra}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(5000)
    try:
        deep = a_message(subscriber_id=subscription.id, webhook=subscription.name, lead=lead).sealed()
        task = deliver_webhook.apply_async(kwargs={"delivery": deep}, queue=QUEUE)
    finally:
        sys.setrecursionlimit(limit)

    [row] = wait_for(lambda: refused_claiming(task.id), 30, "the record")
    assert row["delivery_id"].startswith("sqs:")
    assert row["error"].startswith("undecodable message refused: DecodeError: maximum recursion depth exceeded")
    assert f"delivery_id': '{deep['delivery_id']}'" in row["error"]  # the summary it claimed, to find the lead
    assert receiver.to(path) == []
    wait_for(lambda: in_queue(sqs) == (0, 0), 30, "the message deleted")


def test_a_message_whose_refusal_cannot_be_recorded_stays_in_the_queue(
    database: str, moto: object, sqs: Any, logs: Path
) -> None:
    queue = unique("unrecorded")
    broken = f"{database.rsplit('/', 1)[1]}_noschema"
    mysql(f"CREATE DATABASE {broken}")  # the audit database reachable, its table missing: every write fails
    worker = Worker(
        logs / f"{queue}.log",
        {"SQS_QUEUE": queue, "AUDIT_DATABASE_URL": f"mysql+pymysql://root@127.0.0.1:3306/{broken}"},
    )
    try:
        url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="garbage")
        wait_for(lambda: "is handed back to SQS" in worker.output(), 30, "the failed record")
        assert sum(in_queue(sqs, queue)) == 1  # not deleted: hidden for the visibility timeout, then again
    finally:
        worker.stop()
        mysql(f"DROP DATABASE IF EXISTS {broken}")
    assert "Unrecoverable error" not in worker.output()


def in_queue(sqs: Any, queue: str = QUEUE) -> tuple[int, int]:
    """(visible, in flight) messages of ``queue``."""
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return int(found[names[0]]), int(found[names[1]])
