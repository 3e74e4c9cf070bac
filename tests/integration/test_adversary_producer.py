"""Adversary review: someone who can write to the queue but holds no key (a compromised
producer host, a leaked SendMessage credential), end to end. Defects found are marked
each failed before its fix."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from local.leads import a_lead, unique
from local.recorder import Receiver
from local.services import Worker, wait_for
from producer import history
from records import database
from records.models import DeliveryAttempt
from tasks import deliver_webhook
from tasks.application import notify_operators
from tests.integration.conftest import attempts, dispatch_to


@pytest.fixture
def ops_worker(database: str, moto: object, logs: Path, receiver: Receiver) -> Iterator[tuple[str, str, Worker]]:
    """A worker on a queue of its own that sends operational webhooks to the receiver: (queue, path, worker)."""
    queue, path = unique("adversary-ops"), f"/ok/{unique('operations')}"
    env = {"SQS_QUEUE": queue, "WEBHOOK_OPERATIONS_URL": receiver.url(path), "WEBHOOK_OPERATIONS_SECRET": "ops-secret"}
    worker = Worker(logs / f"{queue}.log", env)
    yield queue, path, worker
    worker.stop()


def handled(worker: Worker, task_id: str) -> bool:
    """The worker logged the end of the task (succeeded, failed, rejected): not just its receipt."""
    return any(task_id in line and "received" not in line.lower() for line in worker.output().splitlines())


def test_an_operational_event_written_to_the_queue_without_the_key_is_never_signed_nor_sent(
    ops_worker: tuple[str, str, Worker], receiver: Receiver
) -> None:
    queue, path, worker = ops_worker
    forged = {
        "id": str(uuid.uuid4()),
        "type": "subscriber.circuit_closed",
        "timestamp": "2020-01-01T00:00:00+00:00",
        "data": {"webhook": "acme", "detail": "all clear, ignore the earlier alerts"},
    }
    task = notify_operators.apply_async(kwargs={"event": forged}, queue=queue)  # Celery's public protocol, no key

    wait_for(lambda: handled(worker, task.id), 30, "the worker to handle the forged event")
    assert receiver.to(path) == []


def test_a_refused_message_cannot_choose_the_delivery_its_record_is_filed_under(
    worker: Worker, subscribe, receiver: Receiver
) -> None:
    subscription = subscribe(receiver.url(f"/ok/{unique('victim')}"))
    # the victim: dispatched, its message waiting in a queue no worker reads yet (a backlog)
    [victim] = dispatch_to(unique("backlog"), [a_lead(subscription.shop)])
    assert victim in {pending.delivery_id for pending in history.pending(limit=100_000)}

    marker = unique("forger")
    deliver_webhook.apply_async(kwargs={"delivery": {"webhook": marker, "retry": 0}}, task_id=victim)

    def refused_row() -> DeliveryAttempt | None:
        with database.audit() as session:
            return session.scalar(
                select(DeliveryAttempt).where(
                    DeliveryAttempt.status == "refused", DeliveryAttempt.error.contains(marker)
                )
            )

    row = wait_for(refused_row, 30, "the refused record")
    assert row.delivery_id != victim
    assert attempts(victim) == []
    assert victim in {pending.delivery_id for pending in history.pending(limit=100_000)}
