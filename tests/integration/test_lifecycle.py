"""Subscribers that change, pause and go, end to end: every attempt follows the subscriber's
current state (a real worker, moto's SQS, MariaDB, the loopback receiver).

The tests' schedule is 2 s, 4 s; a worker sees a change within SUBSCRIBER_CACHE_SECONDS (1 s).
A test whose operator acts between a delivery's first attempt and its retry runs a worker of its
own whose retries are 10 s apart (``patient``): the action lands first however slow the machine.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from local.leads import a_lead, unique
from local.recorder import Receiver
from local.services import Worker, wait_for
from producer import subscribers
from tests.integration.conftest import Cli, attempts, dispatch_to, run_cli
from tests.integration.test_delivery import dispatched
from webhooks import clock


@pytest.fixture
def patient(own_worker: Callable[..., tuple[str, Worker]]) -> str:
    """The queue of a worker of the test's own whose first retry is 10 s after the first attempt
    (its messages still hop every second: an end or a hold is recorded within a second)."""
    queue, _ = own_worker(WEBHOOK_RETRY_SCHEDULE="10s,20s")
    return queue


def statuses(delivery_id: str) -> list[str]:
    return [row["status"] for row in attempts(delivery_id)]


def until_statuses(delivery_id: str, *expected: str, timeout: float = 30) -> list[dict[str, object]]:
    def reached() -> list[dict[str, object]] | None:
        rows = attempts(delivery_id)
        return rows if [row["status"] for row in rows][: len(expected)] == list(expected) else None

    found: list[dict[str, object]] = wait_for(reached, timeout, f"records {expected} of {delivery_id}")
    return found


def sha256(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_an_updated_url_is_followed_by_the_retries_already_scheduled(
    patient: str, receiver: Receiver, subscribe, cli: Cli
) -> None:
    old, new = f"/fail/{unique('old-url')}", f"/ok/{unique('new-url')}"
    subscription = subscribe(receiver.url(old))
    [delivery_id] = dispatch_to(patient, [a_lead(subscription.shop)])
    until_statuses(delivery_id, "error")

    updated = cli("update", subscription.name, "--url", receiver.url(new))
    assert updated.exit_code == 0, updated.output

    rows = until_statuses(delivery_id, "error", "success")
    assert len(receiver.to(old)) == 1
    [moved] = receiver.to(new)
    assert moved.headers["webhook-id"] == delivery_id
    assert json.loads(moved.body)["body"]["retry"] == 1
    assert rows[1]["url"] == receiver.url(new)


def test_update_is_validated_like_configure_and_changes_nothing_when_refused(subscribe, cli: Cli) -> None:
    subscription = subscribe("http://127.0.0.1:9/kept")
    for args, problem in [
        (["--url", "ftp://example.com/x"], "must be an http:// or https:// URL"),
        (["--url", "http://10.1.2.3/x"], "10.1.2.3 is private"),
        (["--lead-type", "fax"], "'fax' is not one of"),
        (["--erp-shop-id", " "], "at least one non-empty --erp-shop-id"),
        ([], "nothing to change"),
    ]:
        result = cli("update", subscription.name, *args)
        assert result.exit_code != 0, args
        assert problem in result.output, (args, result.output)
        assert "Traceback" not in result.output
    kept = subscribers.named(subscription.name)
    assert (kept.url, kept.erp_shop_ids) == ("http://127.0.0.1:9/kept", [subscription.shop])
    unknown = cli("update", "nobody-by-that-name", "--url", "http://127.0.0.1:9/x")
    assert unknown.exit_code == 1 and "no subscriber is named 'nobody-by-that-name'" in unknown.output


def test_a_disabled_subscriber_s_retries_are_held_not_sent_and_go_again_on_enable(
    patient: str, receiver: Receiver, subscribe, cli: Cli
) -> None:
    path = f"/flaky/1/{unique('paused')}"
    subscription = subscribe(receiver.url(path))
    [delivery_id] = dispatch_to(patient, [a_lead(subscription.shop)])
    until_statuses(delivery_id, "error")
    assert cli("disable", subscription.name).exit_code == 0

    held = until_statuses(delivery_id, "error", "held")
    assert "its subscriber is disabled" in str(held[1]["error"])
    assert len(receiver.to(path)) == 1  # the retry was not sent
    pending = json.loads(cli("deliveries", "--pending", "--webhook", subscription.name, "--json").output)
    assert [(entry["delivery_id"], entry["state"]) for entry in pending] == [(delivery_id, "held")]
    assert pending[0]["next_attempt"] == "on webhooks enable"
    newer = dispatched(cli, a_lead(subscription.shop))
    assert newer == []  # a disabled subscriber gets no new deliveries

    enabled = cli("enable", subscription.name)  # (its SQS_QUEUE another: the delivery goes back to its own)
    assert enabled.exit_code == 0 and "1 held deliveries sent again" in enabled.output

    rows = until_statuses(delivery_id, "error", "held", "success")
    assert [row["retry"] for row in rows] == [0, 1, 1]
    assert len(receiver.to(path)) == 2
    assert cli("deliveries", "--pending", "--webhook", subscription.name, "--json").output.strip() == "[]"


def test_a_deleted_subscriber_s_pending_deliveries_end_cancelled_and_the_audit_keeps_its_records(
    patient: str, receiver: Receiver, subscribe, cli: Cli
) -> None:
    path = f"/fail/{unique('deleted')}"
    subscription = subscribe(receiver.url(path))
    [delivery_id] = dispatch_to(patient, [a_lead(subscription.shop)])
    until_statuses(delivery_id, "error")

    deleted = cli("delete", subscription.name, "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert "1 pending deliveries cancelled" in deleted.output

    rows = until_statuses(delivery_id, "error", "cancelled")
    assert f"its subscriber {subscription.name} was deleted" in str(rows[1]["error"])
    time.sleep(3)  # its message hopped every second: it ended, nothing more is sent or recorded
    assert len(receiver.to(path)) == 1 and statuses(delivery_id) == ["error", "cancelled"]
    listed = json.loads(cli("deliveries", "--webhook", subscription.name, "--json").output or "[]")
    assert listed == [] or all(row["webhook"] == subscription.name for row in listed)
    assert cli("list", "--json").output.count(subscription.name) == 0


def test_retries_dispatched_before_a_rotation_are_signed_with_the_new_secret_once_the_grace_ends(
    patient: str, receiver: Receiver, subscribe, cli: Cli
) -> None:
    path = f"/flaky/1/{unique('rotated-retry')}"
    subscription = subscribe(receiver.url(path))
    [delivery_id] = dispatch_to(patient, [a_lead(subscription.shop)])
    until_statuses(delivery_id, "error")
    assert cli("disable", subscription.name).exit_code == 0  # the retry waits, whatever the rotations take
    until_statuses(delivery_id, "error", "held")

    secrets = [subscription.secret]
    for _ in range(2):  # two rotations, no grace: the dispatch-time secret is two rotations old
        rotated = run_cli("rotate-secret", subscription.name, env={"WEBHOOK_SECRET_GRACE": "0s"})
        assert rotated.returncode == 0, rotated.stderr
        secrets.append(rotated.stdout.split('"')[1])
    assert cli("enable", subscription.name).exit_code == 0

    until_statuses(delivery_id, "error", "held", "success")
    first, retry = receiver.to(path)
    assert first.headers["X-Hub-Signature-256"] == sha256(secrets[0], first.body)
    assert retry.headers["X-Hub-Signature-256"] == sha256(secrets[2], retry.body)
    assert sha256(secrets[0], retry.body) not in retry.headers["X-Hub-Signature-256"]


def test_rotate_secret_under_the_wrong_key_is_refused_and_changes_nothing(subscribe) -> None:
    import base64

    subscription = subscribe("http://127.0.0.1:9/wrong-key")
    before = subscribers.named(subscription.name).sealed_secret
    wrong = base64.b64encode(bytes(range(50, 82))).decode()

    refused = run_cli("rotate-secret", subscription.name, env={"WEBHOOK_ENCRYPTION_KEY": wrong})

    assert refused.returncode == 1
    assert "does not decrypt with WEBHOOK_ENCRYPTION_KEY" in refused.stderr
    assert "nothing was changed" in refused.stderr and "Traceback" not in refused.stderr
    after = subscribers.named(subscription.name)
    assert (after.sealed_secret, after.previous_sealed_secret) == (before, None)
    assert os.environ["WEBHOOK_ENCRYPTION_KEY"] != wrong


def test_a_redelivery_keeps_the_webhook_id_and_supersedes_the_original_s_pending_retries(
    patient: str, worker: Worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    path = f"/flaky/1/{unique('superseded')}"
    subscription = subscribe(receiver.url(path))
    [original] = dispatch_to(patient, [a_lead(subscription.shop)])
    until_statuses(original, "error")

    result = cli("redeliver", original)  # to the CLI's SQS_QUEUE: the session's worker delivers it
    assert result.exit_code == 0, result.output
    redelivery = result.output.split()[2]

    [row] = until_statuses(redelivery, "success")
    assert row["redelivery_of"] == original
    rows = until_statuses(original, "error", "superseded")
    assert redelivery in str(rows[1]["error"])
    time.sleep(3)  # the original's message hopped every second: it ended, its retry was not sent
    posts = receiver.to(path)
    assert len(posts) == 2
    assert {post.headers["webhook-id"] for post in posts} == {original}


def test_a_lead_dispatched_twice_is_delivered_once_and_again_sends_it_as_a_redelivery(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    path = f"/ok/{unique('idempotent')}"
    subscription = subscribe(receiver.url(path))
    lead = a_lead(subscription.shop)
    [(first, _, _)] = dispatched(cli, lead)
    until_statuses(first, "success")  # (pending, a redelivery would supersede it instead)

    repeated = cli("dispatch", input=json.dumps(lead))
    assert repeated.exit_code == 0, repeated.output
    assert f"already dispatched to {subscription.name} as delivery {first}" in repeated.output
    assert "0 deliveries enqueued, 0 refused; 1 already dispatched" in repeated.output

    forced = cli("dispatch", "--again", input=json.dumps(lead))
    assert forced.exit_code == 0, forced.output
    assert f"(redelivery of {first})" in forced.output
    posts = wait_for(lambda: len(receiver.to(path)) == 2 and receiver.to(path), 30, "the redelivery")
    assert {post.headers["webhook-id"] for post in posts} == {first}

    from producer import dispatch

    assert dispatch(lead) == []  # the Python entry point says the same: nothing new to enqueue
    assert len(dispatch(lead, again=True)) == 1


def test_a_cancelled_delivery_is_recorded_and_nothing_more_is_sent(
    patient: str, receiver: Receiver, subscribe, cli: Cli
) -> None:
    path = f"/fail/{unique('cancelled')}"
    subscription = subscribe(receiver.url(path))
    one, two = dispatch_to(patient, [a_lead(subscription.shop), a_lead(subscription.shop)])
    until_statuses(one, "error")
    until_statuses(two, "error")

    assert cli("cancel", one).exit_code == 0
    by_webhook = cli("cancel", "--webhook", subscription.name)
    assert by_webhook.exit_code == 0 and f"delivery {two} cancelled" in by_webhook.output

    for delivery_id in (one, two):
        rows = until_statuses(delivery_id, "error", "cancelled")
        assert "cancelled by an operator" in str(rows[1]["error"])
    time.sleep(3)
    assert len(receiver.to(path)) == 2  # the first attempts only
    again = cli("cancel", one)
    assert again.exit_code == 1 and "is not pending" in again.output
    unknown = cli("cancel", "no-such-delivery")
    assert unknown.exit_code == 1 and "no delivery 'no-such-delivery' was dispatched" in unknown.output


def test_recover_resends_as_redeliveries_what_never_succeeded_in_the_window(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    down = f"/fail/{unique('outage')}"
    subscription = subscribe(receiver.url(down))
    since = (clock.utcnow() - timedelta(seconds=1)).isoformat()  # the window starts before the dispatch
    leads = [a_lead(subscription.shop), a_lead(subscription.shop)]
    sent = [delivery_id for delivery_id, _, _ in dispatched(cli, leads)]
    for delivery_id in sent:
        until_statuses(delivery_id, "error", "error", "abandoned")

    up = f"/ok/{unique('recovered')}"
    assert cli("update", subscription.name, "--url", receiver.url(up)).exit_code == 0
    dry = cli("recover", subscription.name, "--since", since, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert all(f"{delivery_id} lead" in dry.output for delivery_id in sent)
    assert "2 deliveries" in dry.output and "dry run: nothing sent" in dry.output
    assert receiver.to(up) == []

    done = cli("recover", subscription.name, "--since", since, "--status", "abandoned")
    assert done.exit_code == 0, done.output
    assert "2 deliveries to" in done.output
    posts = wait_for(lambda: len(receiver.to(up)) == 2 and receiver.to(up), 30, "the recovered deliveries")
    assert {post.headers["webhook-id"] for post in posts} == set(sent)
    again = cli("recover", subscription.name, "--since", since, "--dry-run")
    assert "0 deliveries" in again.output  # redelivered once: not a candidate twice
    assert urlsplit(posts[0].path).path == up


def test_held_deliveries_survive_a_key_rotation_resealed_or_left_held_never_lost(
    own_worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    import base64

    from records import deliveries
    from webhooks import secretbox

    path = f"/fail/{unique('rekeyed')}"
    subscription = subscribe(receiver.url(path))
    # parked by a worker of this test's own, stopped then: no worker serving its queue (and
    # holding the old key) sends it again meanwhile; only `webhooks enable` does
    queue, parker = own_worker(WEBHOOK_RETRY_SCHEDULE="10s,20s")  # disabled before its retry
    [delivery_id] = dispatch_to(queue, [a_lead(subscription.shop)])
    until_statuses(delivery_id, "error")
    assert cli("disable", subscription.name).exit_code == 0
    until_statuses(delivery_id, "error", "held")
    parker.stop()
    old = os.environ["WEBHOOK_ENCRYPTION_KEY"]
    new = base64.b64encode(bytes(range(200, 232))).decode()

    # The old key dropped too early: enable leaves it held and says why; nothing is lost.
    early = run_cli("enable", subscription.name, env={"WEBHOOK_ENCRYPTION_KEY": new})
    assert early.returncode == 0, early.stderr
    assert "0 held deliveries sent again" in early.stdout
    assert "1 held deliveries stay held" in early.stderr and delivery_id in early.stderr
    row = deliveries.get(delivery_id)
    assert row is not None and row.held_message is not None
    assert cli("disable", subscription.name).exit_code == 0

    # The documented rotation: NEW first, OLD second, reencrypt-secrets: the parked message too.
    done = run_cli("reencrypt-secrets", env={"WEBHOOK_ENCRYPTION_KEY": f"{new},{old}"})
    try:
        assert done.returncode == 0, done.stderr
        assert re.search(r"; [1-9]\d* held delivery message\(s\) too", done.stdout), done.stdout  # (others' too)
        row = deliveries.get(delivery_id)
        assert row is not None and row.held_message is not None
        secretbox.check_authentic(row.held_message, [base64.b64decode(new)])  # opens under NEW alone
    finally:  # the session's worker knows the old key only: back to it
        assert run_cli("reencrypt-secrets", env={"WEBHOOK_ENCRYPTION_KEY": f"{old},{new}"}).returncode == 0
