"""Replays (issue 16, item 3): a captured delivery message published to the queue again.

A message is sealed (``issued_at`` under its MAC) moments before each publish; SQS records when it
accepted it (``SentTimestamp``), which tasks.transport hands to the task where no publisher can
forge it. A message accepted more than ``WEBHOOK_REPLAY_LIMIT`` after its sealing is refused; one
accepted more than ``WEBHOOK_REPLAY_SKEW`` after it is looked up in the audit first, and refused if
its delivery already succeeded; one accepted on time costs no audit lookup, however long it then
waited in the queue.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from local.leads import unique
from local.recorder import Receiver
from local.services import Worker, wait_for
from tasks import audit, deliver_webhook
from tasks.delivery import Arrival, Failed, process
from tasks.directory import directory
from tasks.message import DeliveryMessage
from tests.integration.conftest import Cli, attempts, message_to, refused_claiming, session_counters, subscriber_at
from tests.support.factories import an_attempt
from webhooks import clock, secretbox


def sealed_at(message: dict[str, Any], issued_at: datetime) -> dict[str, Any]:
    """``message`` as if sealed at ``issued_at``: authentic, with that issue time."""
    return secretbox.authenticate({**message, "issued_at": issued_at.isoformat() + "+00:00"})


def issued(message: dict[str, Any]) -> datetime:
    moment = DeliveryMessage.read(message).issued_at
    assert moment is not None
    return moment


def subscribers_known(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's view of the subscribers loaded now and kept: its load (every
    SUBSCRIBER_CACHE_SECONDS, not per delivery) stays out of a measure of one delivery."""
    directory.forget()
    directory.snapshot()
    monkeypatch.setattr(directory, "max_age", 3600.0)


def raw_body(sqs: Any, message: dict[str, Any]) -> str:
    """The SQS body of ``message`` published as the producer publishes it: captured from a queue
    nobody reads (as someone reading the queue, or the producer's traffic, would capture it)."""
    capture = unique("capture")
    deliver_webhook.apply_async(kwargs={"delivery": message}, task_id=message["delivery_id"], queue=capture)
    url = sqs.get_queue_url(QueueName=capture)["QueueUrl"]
    [captured] = wait_for(lambda: sqs.receive_message(QueueUrl=url).get("Messages"), 10, "the captured message")
    sqs.delete_queue(QueueUrl=url)
    body: str = captured["Body"]
    return body


def test_a_captured_message_published_again_after_its_delivery_succeeded_is_refused_and_never_posted_again(
    database: str, moto: object, sqs: Any, receiver: Receiver, logs: Path, cli: Cli
) -> None:
    queue = unique("replayed")
    # A skew allowance of 2 s instead of 60 s: the replays need not wait a minute to be late.
    worker = Worker(logs / f"{queue}.log", {"SQS_QUEUE": queue, "WEBHOOK_REPLAY_SKEW": "2s"})
    try:
        path = f"/ok/{unique('replayed')}"
        sent = message_to(subscriber_at(receiver.url(path)))
        body = raw_body(sqs, sent)
        url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=body)  # the original publish
        wait_for(lambda: attempts(sent["delivery_id"]), 30, "the delivery")

        late = issued(sent) + timedelta(seconds=3) - clock.utcnow()
        time.sleep(max(0.0, late.total_seconds()))  # past the skew allowance: a replay is late
        replays = [sqs.send_message(QueueUrl=url, MessageBody=body)["MessageId"] for _ in range(3)]

        def handled() -> int:
            return sum(len(attempts(f"sqs:{each}")) for each in replays) + len(receiver.to(path)) - 1

        wait_for(lambda: handled() >= 3, 30, "the 3 replays to be handled")
    finally:
        worker.stop()
    assert len(receiver.to(path)) == 1
    assert [row["status"] for row in attempts(sent["delivery_id"])] == ["success"]
    for each in replays:
        [row] = attempts(f"sqs:{each}")
        assert row["status"] == "refused"
        assert row["error"].startswith(f"replayed message refused: delivery {sent['delivery_id']} already succeeded")
        assert (row["lead_id"], row["webhook"], row["request_body"]) == ("", "", "")
    shown = cli("show", f"sqs:{replays[0]}")
    assert shown.exit_code == 0 and "refused" in shown.output and "replayed message refused" in shown.output


def test_a_message_sqs_accepts_past_the_replay_limit_after_its_sealing_is_refused_whatever_headers_it_carries(
    worker: Worker, receiver: Receiver
) -> None:
    path = f"/ok/{unique('stale')}"
    an_hour_ago = clock.utcnow() - timedelta(hours=1)
    stale = sealed_at(message_to(subscriber_at(receiver.url(path))), an_hour_ago)
    forged = {"sqs_sent_timestamp": int(clock.now().timestamp() * 1000) - 3_600_000, "sqs_message_id": "forged"}
    deliver_webhook.apply_async(kwargs={"delivery": stale}, headers=forged)

    wait_for(lambda: refused_claiming(stale["delivery_id"]) or receiver.to(path), 30, "the refusal")
    [row] = refused_claiming(stale["delivery_id"])
    assert row["error"].startswith("replayed message refused: SQS accepted its message 36")
    assert "s after it was sealed at" in row["error"] and "over WEBHOOK_REPLAY_LIMIT" in row["error"]
    assert row["delivery_id"].startswith("sqs:") and row["delivery_id"] != "sqs:forged"
    assert receiver.to(path) == []
    assert attempts(stale["delivery_id"]) == []  # never a fact about the delivery it names


def test_a_message_that_waited_days_in_the_queue_is_delivered_without_an_audit_lookup(
    one_connection: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = f"/ok/{unique('backlog')}"
    sent = message_to(subscriber_at(receiver.url(path)))
    subscribers_known(monkeypatch)
    audit.record(an_attempt(status="success"))  # this process's audit writes succeed
    thirteen_days_ago = clock.utcnow() - timedelta(days=13)  # SQS keeps messages 14 days
    waited = sealed_at(sent, thirteen_days_ago)
    arrival = Arrival("sqs:backlog", redelivered=False, sent_at=thirteen_days_ago + timedelta(seconds=1))

    before = session_counters(one_connection)
    assert process(waited, arrival) is None
    after = session_counters(one_connection)

    assert after["id"] == before["id"]
    assert after["Com_select"] - before["Com_select"] == 1  # SELECT CONNECTION_ID() alone: no duplicate check
    assert after["Com_insert"] - before["Com_insert"] == 1  # the attempt's record
    assert len(receiver.to(path)) == 1
    assert [row["status"] for row in attempts(waited["delivery_id"])] == ["success"]


def test_a_late_message_costs_one_audit_lookup_and_is_delivered_if_its_delivery_did_not_succeed_yet(
    one_connection: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = f"/ok/{unique('late')}"
    sent = message_to(subscriber_at(receiver.url(path)))
    subscribers_known(monkeypatch)
    audit.record(an_attempt(status="success"))
    late = Arrival("sqs:late", redelivered=False, sent_at=issued(sent) + timedelta(minutes=5))

    before = session_counters(one_connection)
    assert process(sent, late) is None
    after = session_counters(one_connection)

    assert after["Com_select"] - before["Com_select"] == 2  # the duplicate check, and SELECT CONNECTION_ID()
    assert len(receiver.to(path)) == 1
    assert [row["status"] for row in attempts(sent["delivery_id"])] == ["success"]

    refused = process(sent, Arrival("sqs:late-again", redelivered=False, sent_at=late.sent_at))
    assert isinstance(refused, Failed) and refused.reason.startswith("replayed message refused")
    assert len(receiver.to(path)) == 1
    [row] = attempts("sqs:late-again")
    assert row["error"].startswith(f"replayed message refused: delivery {sent['delivery_id']} already succeeded")


def test_the_transport_gives_the_task_sqs_own_message_id_and_sent_time_over_headers_the_publisher_sent(
    moto: object,
) -> None:
    name = unique("receipts")
    forged = {"sqs_message_id": "forged", "sqs_sent_timestamp": 1, "task": "tasks.deliver_webhook", "id": "x"}
    with Connection(os.environ["BROKER_URL"], transport="tasks.transport:Transport") as connection:
        channel = connection.default_channel
        queue = Queue(name, Exchange(name), routing_key=name)(channel)
        queue.declare()
        channel.basic_publish(channel.prepare_message("{}", headers=forged), name, name)
        received = wait_for(lambda: queue.get(no_ack=False), 10, "the message")
        received.ack()
        queue.delete()
    sqs_says = received.delivery_info["sqs_message"]
    assert received.headers["sqs_message_id"] == sqs_says["MessageId"] != "forged"
    assert received.headers["sqs_sent_timestamp"] == int(sqs_says["Attributes"]["SentTimestamp"]) != 1


def test_a_message_sqs_gives_no_sent_time_for_is_checked_in_the_audit_before_it_is_sent(
    one_connection: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = f"/ok/{unique('unknown')}"
    sent = message_to(subscriber_at(receiver.url(path)))
    subscribers_known(monkeypatch)
    audit.record(an_attempt(status="success"))
    before = session_counters(one_connection)
    assert process(sent, Arrival("sqs:unknown", redelivered=False, sent_at=None)) is None
    after = session_counters(one_connection)
    assert after["Com_select"] - before["Com_select"] == 2  # the duplicate check, and SELECT CONNECTION_ID()
    assert len(receiver.to(path)) == 1
