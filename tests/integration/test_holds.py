"""Deliveries held by an open circuit wait in the platform database, not in SQS, and are sent
again by the workers (tasks.holds): the oldest as the probe when the cool-down ends, the
others once the probe closed the circuit. A real worker, moto's SQS, MariaDB, a loopback
receiver."""

from __future__ import annotations

import threading
import time
from functools import partial
from typing import Any

from local.leads import a_lead
from local.recorder import Receiver
from local.services import wait_for
from producer import subscribers
from records import deliveries
from tasks.message import DeliveryMessage
from tests.integration.conftest import (
    Subscription,
    attempts,
    dispatch_to,
    end_cool_down,
    message_to,
    open_circuit,
    subscriber_at,
)
from tests.integration.test_isolation import events, succeeded
from webhooks.clock import utcnow


def held_records(delivery_id: str) -> list[dict[str, Any]]:
    return [row for row in attempts(delivery_id) if row["status"] == "held"]


def messages_in(sqs: Any, queue: str) -> int:
    """Every message of the queue, visible, in flight or delayed (as moto counts them)."""
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(found[name]) for name in names)


def three_held(queue: str, receiver: Receiver, kind: str, cooldown: int) -> tuple[Subscription, str, list[str]]:
    """A subscriber at ``/KIND/…`` of the receiver, its circuit open with a cool-down of
    ``cooldown`` seconds, and three leads dispatched to it on ``queue``, each recorded held:
    (it, its path, their ids). The circuit stays open however slow the worker is to take them:
    the test ends the cool-down (``end_cool_down``) when it wants the probe."""
    path = f"/{kind}/{time.monotonic_ns()}-held"
    subscription = subscriber_at(receiver.url(path))
    open_circuit(subscription.id, 600, cooldown=cooldown)
    sent = dispatch_to(queue, [a_lead(subscription.shop) for _ in range(3)])
    for delivery_id in sent:
        wait_for(partial(held_records, delivery_id), 30, "every delivery held")
    return subscription, path, sent


def test_deliveries_held_by_an_open_circuit_wait_in_the_database_and_the_oldest_probes_when_the_cool_down_ends(
    own_worker, receiver: Receiver, sqs: Any
) -> None:
    queue, worker = own_worker()
    subscription, path, sent = three_held(queue, receiver, "ok", 8)

    # parked in the database, nothing of them left in SQS, nothing POSTed
    parked = deliveries.held(subscription.id)  # oldest first
    assert {row.delivery_id for row in parked} == set(sent)
    wait_for(lambda: messages_in(sqs, queue) == 0, 10, "the held deliveries' messages deleted from SQS")
    assert receiver.to(path) == []
    for delivery_id in sent:
        [record] = held_records(delivery_id)
        assert "held: its circuit is open until" in str(record["error"])
        assert "sent again once a probe succeeds" in str(record["error"])

    # no new delivery comes: the oldest parked one is the probe; it closes the circuit, the others follow
    end_cool_down(subscription.id)
    for delivery_id in sent:
        wait_for(partial(succeeded, delivery_id), 60, "every held delivery delivered")
    posts = receiver.to(path)
    assert len(posts) == 3  # each one once
    assert posts[0].headers["webhook-id"] == parked[0].webhook_id  # the probe: parked the longest
    assert [kind for kind, _ in events(subscription.name)][-1] == "subscriber.circuit_closed"
    assert deliveries.held(subscription.id) == []
    assert "sent again for its circuit's probe" in worker.output()
    worker.stop()  # a warm shutdown stops the thread that tends the held deliveries, cleanly
    assert "Traceback" not in worker.output() and "Signal handler" not in worker.output()


def test_a_failed_probe_opens_the_circuit_again_for_twice_as_long_and_the_others_stay_held(
    own_worker, receiver: Receiver
) -> None:
    queue, _ = own_worker(WEBHOOK_RETRY_SCHEDULE="1h")
    subscription, path, sent = three_held(queue, receiver, "fail", 30)  # (its reopening: 60 s to look)
    end_cool_down(subscription.id)

    def reopened() -> list[tuple[str, str]] | None:
        found = events(subscription.name)
        return found if any("a probe failed" in detail for _, detail in found) else None

    [(kind, detail)] = wait_for(reopened, 30, "the probe to fail")
    assert kind == "subscriber.circuit_opened" and "(60 s)" in detail  # twice the 30 s cool-down
    probed = [delivery_id for delivery_id in sent if any(row["status"] == "error" for row in attempts(delivery_id))]
    assert len(probed) == 1 and len(receiver.to(path)) == 1
    [error] = [row for row in attempts(probed[0]) if row["status"] == "error"]
    assert error["next_retry_at"] is not None  # back on its schedule: its retry is an hour away
    assert {row.delivery_id for row in deliveries.held(subscription.id)} == set(sent) - set(probed)


def test_two_workers_sending_the_parked_deliveries_again_at_once_send_each_one_once(database: str) -> None:
    subscription = subscriber_at("http://127.0.0.1:9/never")
    subscribers.set_enabled(subscription.name, False)
    parked = []
    for _ in range(20):
        message = message_to(subscription)
        delivery = DeliveryMessage.read(message)
        assert deliveries.park(
            message, delivery.row(subscription.id), "held: its subscriber is disabled", "unserved"
        ).parked
        parked.append(delivery.delivery_id)

    sent: list[str] = []
    lock = threading.Lock()

    def send(message: Any, _held_at: Any, queue: str | None) -> bool:
        assert queue == "unserved"  # the queue each was taken from
        time.sleep(0.01)  # a publish: the other worker tries meanwhile
        with lock:
            sent.append(str(message["delivery_id"]))
        return True

    workers = [
        threading.Thread(target=deliveries.send_parked, args=(subscription.id, send), kwargs={"limit": 50})
        for _ in range(2)
    ]
    for each in workers:
        each.start()
    for each in workers:
        each.join(30)
    assert sorted(sent) == sorted(parked)  # every one, once
    assert deliveries.held(subscription.id) == []


def test_enabling_a_subscriber_whose_circuit_is_open_leaves_its_held_deliveries_to_the_circuit(
    database: str, cli: Any
) -> None:
    subscription = subscriber_at("http://127.0.0.1:9/never")
    open_circuit(subscription.id, 3600)
    message = message_to(subscription)
    delivery = DeliveryMessage.read(message)
    reason = "held: its circuit is open until later"
    assert deliveries.park(message, delivery.row(subscription.id), reason, "unserved", while_circuit_open=True).parked

    done = cli("enable", subscription.name)

    assert done.exit_code == 0, done.output
    assert "its circuit is open until" in done.output and "its 1 held deliveries are sent again" in done.output
    assert [row.delivery_id for row in deliveries.held(subscription.id)] == [delivery.delivery_id]


def test_a_delivery_an_operator_ended_is_not_parked(database: str, cli: Any) -> None:
    subscription = subscriber_at("http://127.0.0.1:9/never")
    subscribers.set_enabled(subscription.name, False)
    message = message_to(subscription)
    delivery = DeliveryMessage.read(message)
    deliveries.add([delivery.row(subscription.id)], utcnow())
    assert cli("cancel", delivery.delivery_id).exit_code == 0

    done = deliveries.park(message, delivery.row(subscription.id), "held: its subscriber is disabled", "unserved")

    assert not done.parked and done.ended is not None and done.ended[0] == "cancelled"
    assert deliveries.held(subscription.id) == []


def test_a_circuit_that_opens_again_soon_after_closing_waits_twice_as_long(database: str) -> None:
    import settings
    from tasks import circuit

    subscription = subscriber_at("http://127.0.0.1:9/never")
    failing = circuit.Outcomes(attempts=10, failures=10)
    first = circuit.open_if_closed(subscription.id, subscription.name, failing)
    assert first is not None and first[1] == settings.WEBHOOK_CIRCUIT_COOLDOWN
    circuit.probed(subscription.id, subscription.name, True, first[1], None)  # closes it

    again = circuit.open_if_closed(subscription.id, subscription.name, failing)

    assert again is not None and again[1] == min(2 * first[1], settings.WEBHOOK_CIRCUIT_COOLDOWN_MAX)
    assert "twice the last" in events(subscription.name)[-1][1]
