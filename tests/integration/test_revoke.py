"""A revoke from Flower or `celery control revoke` ends the delivery in the audit, like
`webhooks cancel` (it no longer ends silently)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.leads import a_lead, unique
from local.recorder import Receiver
from local.services import BIN, ROOT, Worker, wait_for
from records import deliveries
from tests.integration.conftest import attempts, dispatch_to
from tests.integration.test_lifecycle import until_statuses


@pytest.fixture
def remote_controlled(database: str, moto: object, logs: Path) -> Iterator[tuple[str, Worker]]:
    """A worker with remote control on (WORKER_EVENTS: SNS fanout), on a queue of its own."""
    queue = unique("revoked")
    # Its retries a minute apart (the message still hops every second, SQS_MAX_DELAY): a revoke
    # however slow to arrive meets the delivery before its schedule ends.
    env = {"SQS_QUEUE": queue, "WORKER_EVENTS": "1", "WEBHOOK_RETRY_SCHEDULE": "60s,120s"}
    worker = Worker(logs / f"{queue}.log", env)
    yield queue, worker
    worker.stop()


def test_a_revoked_delivery_ends_cancelled_in_the_audit_and_is_never_sent_again(
    remote_controlled: tuple[str, Worker], receiver: Receiver, subscribe
) -> None:
    queue, worker = remote_controlled
    path = f"/fail/{unique('revoked')}"
    subscription = subscribe(receiver.url(path))
    [delivery_id] = dispatch_to(queue, [a_lead(subscription.shop)])
    until_statuses(delivery_id, "error")  # its retry hops in SQS (SQS_MAX_DELAY 1 s in the tests)

    revoked = subprocess.run(
        [str(BIN / "celery"), "-A", "tasks", "control", "revoke", delivery_id],
        capture_output=True,
        text=True,
        env={**os.environ, "SQS_QUEUE": queue, "WORKER_EVENTS": "1"},
        cwd=ROOT,
        timeout=120,
    )
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr

    def ended() -> list[dict[str, object]] | None:  # (a retry may fail before the revoke arrives)
        rows = attempts(delivery_id)
        return rows if rows and rows[-1]["status"] == "cancelled" else None

    rows = wait_for(ended, 30, "the revoke recorded")
    assert {row["status"] for row in rows[:-1]} == {"error"}
    assert "revoked by Celery remote control" in str(rows[-1]["error"])
    row = deliveries.get(delivery_id)
    assert row is not None and row.ended_status == "cancelled"  # every worker drops it from now on
    sent = len(receiver.to(path))
    wait_for(lambda: "Discarding revoked task" in worker.output(), 10, "the worker's own word")
    assert len(attempts(delivery_id)) == len(rows) and len(receiver.to(path)) == sent == len(rows) - 1
