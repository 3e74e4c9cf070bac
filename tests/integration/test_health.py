"""`webhooks health`: each subscriber's state, circuit, recent attempts and durations, last
success, failures since and pending deliveries, from audit records generated here (times
relative to the project's clock)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

from sqlalchemy import update

from producer import lifecycle
from records import database, deliveries
from records.models import Subscriber
from tasks import audit
from tests.integration.conftest import Cli, Subscription, subscriber_at
from webhooks.clock import utcnow
from webhooks.status import Status


def record(subscription: Subscription, status: Status, at: datetime, duration_ms: float, delivery_id: str = "") -> str:
    """One audit record of the subscriber, as a worker writes it."""
    delivery_id = delivery_id or str(uuid.uuid4())
    audit.write(
        audit.Attempt(
            delivery_id=delivery_id,
            lead_id=str(uuid.uuid4()),
            webhook=subscription.name,
            url=subscription.url,
            retry=0,
            status=str(status),
            http_status=200 if status == Status.SUCCESS else 503,
            error=None if status == Status.SUCCESS else "HTTP 503",
            request_headers={},
            request_body="{}",
            response_body=None,
            duration_ms=duration_ms,
            attempted_at=at,
            next_retry_at=at + timedelta(hours=1) if status == Status.ERROR else None,
        )
    )
    return delivery_id


def dispatched(subscription: Subscription, at: datetime) -> str:
    delivery_id = str(uuid.uuid4())
    new = deliveries.New(delivery_id, delivery_id, str(uuid.uuid4()), subscription.id, subscription.name)
    deliveries.add([new], at)
    return delivery_id


def health_of(cli: Cli, name: str) -> dict[str, object]:
    done = cli("health", name, "--json")
    assert done.exit_code == 0, done.output
    [found] = json.loads(done.output)
    assert isinstance(found, dict)
    return found


def test_health_counts_the_last_hour_and_day_with_exact_percentiles_and_the_failures_since_the_last_success(
    cli: Cli,
) -> None:
    subscription = subscriber_at("http://127.0.0.1:9/health")
    now = utcnow()
    for duration in range(1, 21):  # the last hour: 20 attempts of 1 to 20 ms, two of them failed
        status = Status.ERROR if duration in (7, 13) else Status.SUCCESS
        record(subscription, status, now - timedelta(minutes=50) + timedelta(seconds=duration), float(duration))
    for hours in range(2, 12):  # earlier today: 10 successes of 100 to 1,000 ms
        record(subscription, Status.SUCCESS, now - timedelta(hours=hours), 100.0 * (hours - 1))
    record(subscription, Status.SUCCESS, now - timedelta(days=3), 5000.0)  # out of both windows
    last = now - timedelta(minutes=5)
    record(subscription, Status.SUCCESS, last, 3.5)
    for minutes in (4, 3, 2):  # failing since
        record(subscription, Status.ERROR, now - timedelta(minutes=minutes), 10000.0)
    record(subscription, Status.HELD, now - timedelta(minutes=1), 0.0)  # not an attempt

    found = health_of(cli, subscription.name)

    assert found["enabled"] is True and found["circuit"] == "closed" and found["circuit_until"] is None
    # hour: 20 + the last success + 3 failures = 24 attempts, 19 succeeded; nearest rank of 24 durations
    assert found["last_hour"] == {
        "attempts": 24,
        "succeeded": 19,
        "success_rate": 79.2,
        "duration_ms": {"median": 11.0, "p95": 10000.0},
    }
    assert found["last_day"] == {
        "attempts": 34,
        "succeeded": 29,
        "success_rate": 85.3,
        "duration_ms": {"median": 16.0, "p95": 10000.0},
    }
    assert found["last_success"] == last.isoformat(timespec="seconds") + "+00:00"
    assert found["consecutive_failures"] == 3


def test_health_counts_pending_deliveries_as_deliveries_pending_does(cli: Cli) -> None:
    subscription = subscriber_at("http://127.0.0.1:9/pending")
    now = utcnow()
    queued = dispatched(subscription, now - timedelta(minutes=1))  # no record yet
    retrying = dispatched(subscription, now - timedelta(minutes=30))
    record(subscription, Status.ERROR, now - timedelta(minutes=29), 12.0, retrying)
    done = dispatched(subscription, now - timedelta(minutes=30))
    record(subscription, Status.ERROR, now - timedelta(minutes=29), 12.0, done)
    record(subscription, Status.SUCCESS, now - timedelta(minutes=2), 12.0, done)
    cancelled = dispatched(subscription, now - timedelta(minutes=20))
    lifecycle.cancel(cancelled)
    dispatched(subscription, now - timedelta(days=40))  # beyond the 30 days `deliveries --pending` looks at

    assert health_of(cli, subscription.name)["pending"] == 2
    listed = cli("deliveries", "--pending", "--webhook", subscription.name, "--json")
    assert {row["delivery_id"] for row in json.loads(listed.output)} == {queued, retrying}


def test_health_says_why_a_subscriber_is_disabled_and_until_when_its_circuit_is_open(cli: Cli) -> None:
    subscription = subscriber_at("http://127.0.0.1:9/unwell")
    until = (utcnow() + timedelta(minutes=5)).replace(microsecond=0)
    with database.platform() as session:
        session.execute(update(Subscriber).where(Subscriber.id == subscription.id).values(circuit_open_until=until))
    lifecycle.disable(subscription.name)

    found = health_of(cli, subscription.name)
    assert found["enabled"] is False
    assert found["disabled_reason"] == "disabled by an operator (webhooks disable)"
    assert found["circuit"] == "open" and found["circuit_until"] == until.isoformat() + "+00:00"
    assert found["last_hour"] == {
        "attempts": 0,
        "succeeded": 0,
        "success_rate": None,
        "duration_ms": {"median": None, "p95": None},
    }
    assert found["last_success"] is None and found["consecutive_failures"] == 0 and found["pending"] == 0

    text = cli("health", subscription.name)
    assert text.exit_code == 0, text.output
    assert text.output.splitlines() == [
        f"{subscription.name}: DISABLED since {found['disabled_at']}: disabled by an operator (webhooks disable); "
        f"circuit open until {found['circuit_until']}",
        "  last hour: no attempts",
        "  last day:  no attempts",
        "  no success recorded; 0 failed attempts; 0 pending deliveries",
    ]


def test_health_of_every_subscriber_lists_each_one_and_an_unknown_name_is_refused(cli: Cli) -> None:
    subscription = subscriber_at("http://127.0.0.1:9/every")
    everyone = cli("health", "--json")
    assert everyone.exit_code == 0, everyone.output
    assert subscription.name in {each["name"] for each in json.loads(everyone.output)}

    refused = cli("health", "nosuch")
    assert refused.exit_code == 1
    assert "no subscriber is named 'nosuch'" in refused.output
