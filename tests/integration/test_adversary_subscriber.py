"""Adversary review: a hostile subscriber, end to end (a real worker, moto's SQS, MariaDB, the
loopback receiver). Each failed before its fix."""

from __future__ import annotations

from local.leads import a_lead, unique
from local.recorder import Receiver
from local.services import Worker, wait_for
from tests.integration.conftest import Cli, attempts
from tests.integration.test_delivery import dispatched


def test_a_429_with_a_retry_after_beyond_the_calendar_is_recorded_as_an_error_before_the_next_attempt(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    # the receiver answers the first POST 429 with this Retry-After, every later one 200
    path = f"/retry-after/1000000000000/429/{unique('overflow')}"
    subscription = subscribe(receiver.url(path))
    [(delivery_id, _, _)] = dispatched(cli, a_lead(subscription.shop))

    rows = wait_for(
        lambda: (found := attempts(delivery_id)) and found[-1]["status"] == "success" and found, 30, "the success"
    )
    posts = receiver.to(path)
    assert len(posts) == 2
    assert [row["status"] for row in rows] == ["error", "success"]  # every POST has its record
    assert rows[0]["http_status"] == 429 and "Retry-After" in str(rows[0]["error"])
