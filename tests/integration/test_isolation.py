"""One subscriber's failure costs the others nothing, end to end: Retry-After, 410 Gone, the
fleet-wide circuit breaker, auto-disable, operational webhooks, the in-flight limit.

Each test that changes a setting runs a worker of its own on a queue of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from functools import partial
from urllib.parse import quote

import pytest
from sqlalchemy import select

from local.leads import a_lead, unique
from local.recorder import Receiver
from local.services import Worker, wait_for
from producer import subscribers
from records import database
from records.models import SubscriberEvent
from tests.integration.conftest import Cli, Subscription, attempts, dispatch_to
from tests.integration.test_delivery import dispatched
from tests.integration.test_lifecycle import until_statuses
from webhooks import clock


def succeeded(delivery_id: str) -> bool:
    return "success" in [row["status"] for row in attempts(delivery_id)]


def timed_events(name: str) -> list[tuple[str, str, datetime]]:
    with database.platform() as session:
        found = session.execute(
            select(SubscriberEvent.kind, SubscriberEvent.detail, SubscriberEvent.at)
            .where(SubscriberEvent.webhook == name)
            .order_by(SubscriberEvent.id)
        )
        return [(kind, detail, at) for kind, detail, at in found]


def events(name: str) -> list[tuple[str, str]]:
    with database.platform() as session:
        found = session.execute(
            select(SubscriberEvent.kind, SubscriberEvent.detail)
            .where(SubscriberEvent.webhook == name)
            .order_by(SubscriberEvent.id)
        )
        return [(kind, detail) for kind, detail in found]


@pytest.mark.parametrize(
    ("value", "honoured"),
    [("3", True), ("http-date", True), ("soon", False), ("-5", False)],
)
def test_a_retry_after_on_429_is_honoured_and_a_malformed_one_is_ignored_and_recorded(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli, value: str, honoured: bool
) -> None:
    if value == "http-date":
        value = format_datetime(clock.now().replace(microsecond=0) + timedelta(seconds=4), True)
    path = f"/retry-after/{quote(value, safe='')}/429/{unique('later')}"
    subscription = subscribe(receiver.url(path))
    [(delivery_id, _, _)] = dispatched(cli, a_lead(subscription.shop))

    rows = until_statuses(delivery_id, "error", "success")
    first, second = receiver.to(path)
    failed_at, due = rows[0]["attempted_at"], rows[0]["next_retry_at"]
    assert isinstance(failed_at, datetime) and isinstance(due, datetime)
    if honoured:
        assert "honoured: next attempt at" in str(rows[0]["error"])
        if value == "3":
            asked = failed_at + timedelta(seconds=3)
        else:
            asked = parsedate_to_datetime(value).astimezone(UTC).replace(tzinfo=None)
        # no earlier than the subscriber asked (the schedule said 2 s), unless beyond the horizon (4 s here)
        assert due >= min(asked, failed_at + timedelta(seconds=4))
    else:
        assert "Retry-After ignored" in str(rows[0]["error"]) and repr(value)[1:-1] in str(rows[0]["error"])
        assert due - failed_at == timedelta(seconds=2)  # the schedule's 2 s
    # and the worker waited for it (the receiver's clock is the machine's; 0.3 s for the POST's way)
    assert second.at - first.at >= (due - failed_at).total_seconds() - 0.3


def test_a_retry_after_beyond_the_horizon_is_held_to_the_schedule_s_last_attempt(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    path = f"/retry-after/3600/503/{unique('horizon')}"
    subscription = subscribe(receiver.url(path))
    [(delivery_id, _, _)] = dispatched(cli, a_lead(subscription.shop))

    rows = until_statuses(delivery_id, "error", "success", timeout=30)
    failed_at, due = rows[0]["attempted_at"], rows[0]["next_retry_at"]
    assert isinstance(failed_at, datetime) and isinstance(due, datetime)
    assert abs((due - failed_at).total_seconds() - 4) < 0.5  # F + 4 s, the tests' last offset: not an hour
    assert rows[1]["retry"] == 1


def test_410_gone_ends_the_delivery_disables_the_subscriber_and_holds_its_pending_ones(
    own_worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    queue, _ = own_worker(WEBHOOK_RETRY_SCHEDULE="8s,16s")
    failing, gone = f"/fail/{unique('before-gone')}", f"/gone/{unique('gone')}"
    subscription = subscribe(receiver.url(failing))
    [pending] = dispatch_to(queue, [a_lead(subscription.shop)])
    until_statuses(pending, "error")  # its retry is due 8 s later
    assert cli("update", subscription.name, "--url", receiver.url(gone)).exit_code == 0
    time.sleep(1)  # past the worker's SUBSCRIBER_CACHE_SECONDS (0.5 s): it sees the new URL
    [ended] = dispatch_to(queue, [a_lead(subscription.shop)])

    [row] = until_statuses(ended, "abandoned")
    assert row["http_status"] == 410 and "410 Gone" in str(row["error"])
    listed = {entry["name"]: entry for entry in json.loads(cli("list", "--json").output)}[subscription.name]
    assert listed["enabled"] is False and "410 Gone" in listed["disabled_reason"]
    rows = until_statuses(pending, "error", "held")
    assert "its subscriber is disabled" in str(rows[1]["error"])
    assert len(receiver.to(gone)) == 1  # the held retry was not sent
    assert [kind for kind, _ in events(subscription.name)] == ["subscriber.disabled"]


def test_a_failing_subscriber_s_circuit_opens_for_the_fleet_holds_its_deliveries_and_a_probe_closes_it(
    own_worker, receiver: Receiver, subscribe
) -> None:
    queue, worker = own_worker(
        WEBHOOK_CIRCUIT_MIN_ATTEMPTS="3", WEBHOOK_CIRCUIT_COOLDOWN="3s", WEBHOOK_RETRY_SCHEDULE="2s,4s,8s,16s"
    )
    path = f"/flaky/6/{unique('tripping')}"  # six failures, then healthy
    subscription: Subscription = subscribe(receiver.url(path))
    sent = dispatch_to(queue, [a_lead(subscription.shop) for _ in range(4)])

    def opened_and_closed() -> list[tuple[str, datetime]] | None:
        found = [(kind, at) for kind, _, at in timed_events(subscription.name)]
        kinds = [kind for kind, _ in found]
        return found if "subscriber.circuit_opened" in kinds and kinds[-1] == "subscriber.circuit_closed" else None

    found = wait_for(opened_and_closed, 60, "the circuit to open and close")
    for delivery_id in sent:
        wait_for(partial(succeeded, delivery_id), 60, "every delivery")
    held = [row for delivery_id in sent for row in attempts(delivery_id) if row["status"] == "held"]
    assert held and all("circuit" in str(row["error"]) for row in held)
    assert "subscriber.circuit_opened" in worker.output()
    assert re.search(r"\d+ of \d+ attempts failed", events(subscription.name)[0][1])
    # While open, nothing is POSTed but the probes (each one just before the circuit's next event).
    opened_at = next(at for kind, at in found if kind == "subscriber.circuit_opened")
    closed_at = found[-1][1]
    quiet_from = opened_at.replace(tzinfo=UTC).timestamp() + 1.0  # the worker's cache: 0.5 s
    during = [post.at for post in receiver.to(path) if quiet_from < post.at < closed_at.replace(tzinfo=UTC).timestamp()]
    probes = sum(1 for kind, _ in found if kind in {"subscriber.circuit_opened", "subscriber.circuit_closed"}) - 1
    assert len(during) <= probes
    assert all(row["status"] != "abandoned" for delivery_id in sent for row in attempts(delivery_id))


def test_a_subscriber_failing_for_the_disable_period_is_disabled_and_the_operators_are_told(
    own_worker, receiver: Receiver, subscribe
) -> None:
    ops = f"/ok/{unique('operations')}"
    queue, worker = own_worker(
        WEBHOOK_DISABLE_AFTER="6s",  # past at the last retry (10 s), not at the first (2 s, however late)
        WEBHOOK_RETRY_SCHEDULE="2s,10s",
        WEBHOOK_CIRCUIT_BREAKER="0",
        WEBHOOK_OPERATIONS_URL=receiver.url(ops),
        WEBHOOK_OPERATIONS_SECRET="ops-secret",
    )
    path = f"/fail/{unique('dead')}"
    subscription = subscribe(receiver.url(path))
    [delivery_id] = dispatch_to(queue, [a_lead(subscription.shop)])

    until_statuses(delivery_id, "error", "error", "abandoned")
    wait_for(lambda: not subscribers.named(subscription.name).enabled, 20, "the subscriber disabled")
    assert "every attempt failed since" in str(subscribers.named(subscription.name).disabled_reason)
    assert "ERROR/MainProcess] subscriber.disabled webhook=" in worker.output()

    told = wait_for(lambda: len(receiver.to(ops)) >= 2 and receiver.to(ops), 30, "the operational webhooks")
    types = {json.loads(request.body)["type"] for request in told}
    assert {"subscriber.disabled", "delivery.abandoned"} <= types
    for request in told:
        expected = "sha256=" + hmac.new(b"ops-secret", request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-Hub-Signature-256"] == expected
        assert request.headers["webhook-signature"].startswith("v1,")


def test_an_operational_webhook_that_fails_is_tried_a_few_times_then_logged_never_looping(
    own_worker, receiver: Receiver, subscribe
) -> None:
    ops = f"/fail/{unique('operations-down')}"
    queue, worker = own_worker(WEBHOOK_OPERATIONS_URL=receiver.url(ops), WEBHOOK_OPERATIONS_SECRET="ops-secret")
    subscription = subscribe(receiver.url(f"/gone/{unique('gone-ops')}"))
    [delivery_id] = dispatch_to(queue, [a_lead(subscription.shop)])

    until_statuses(delivery_id, "abandoned")
    wait_for(lambda: "not delivered after 3 tries" in worker.output(), 30, "the last try logged")
    assert len(receiver.to(ops)) == 3
    assert attempts(delivery_id)[0]["status"] == "abandoned"  # the lead's record is untouched


def test_a_slow_subscriber_gets_at_most_its_in_flight_limit_and_the_others_are_served(
    own_worker, receiver: Receiver, subscribe
) -> None:
    queue, _ = own_worker(WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIBER="2", WEBHOOK_TIMEOUT="10")
    slow_path, quick_path = f"/slow/2/{unique('slow')}", f"/ok/{unique('quick')}"
    slow, quick = subscribe(receiver.url(slow_path)), subscribe(receiver.url(quick_path))
    slow_ids = dispatch_to(queue, [a_lead(slow.shop) for _ in range(6)])
    quick_ids = dispatch_to(queue, [a_lead(quick.shop) for _ in range(3)])

    wait_for(lambda: len(receiver.to(quick_path)) == 3, 10, "the quick subscriber served meanwhile")
    for delivery_id in slow_ids + quick_ids:
        wait_for(partial(succeeded, delivery_id), 60, "every delivery")
    arrivals = sorted(request.at for request in receiver.to(slow_path))
    assert len(arrivals) == 6
    most = max(sum(1 for other in arrivals if other <= start < other + 1.9) for start in arrivals)
    assert most <= 2
    held = [row for delivery_id in slow_ids for row in attempts(delivery_id) if row["status"] == "held"]
    assert held and all("in flight in this worker (its limit)" in str(row["error"]) for row in held)
