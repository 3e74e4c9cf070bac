"""`webhooks redeliver` and `webhooks rotate-secret`, end to end."""

from __future__ import annotations

import json
import time

from local.leads import a_lead, unique
from local.recorder import Receiver
from local.services import Worker, wait_for
from tasks import signature
from tests.integration.conftest import CACHE_SECONDS, Cli, attempts, end_grace, run_cli
from tests.integration.test_delivery import dispatched


def test_redeliver_sends_the_lead_again_as_a_new_delivery_recorded_as_a_redelivery(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    path = f"/ok/{unique('again')}"
    subscription = subscribe(receiver.url(path))
    lead = a_lead(subscription.shop)
    [(original, _, _)] = dispatched(cli, lead)
    wait_for(lambda: attempts(original), 30, "the original delivery")

    result = cli("redeliver", original)
    assert result.exit_code == 0, result.output
    redelivery = result.output.split()[2]
    assert f"(redelivery of {original})" in result.output
    assert redelivery != original

    first, second = wait_for(lambda: len(receiver.to(path)) == 2 and receiver.to(path), 30, "the redelivery")
    assert second.headers["webhook-id"] == original  # the receiver's de-duplication stays meaningful
    assert json.loads(second.body) == json.loads(first.body)  # the same lead, retry 0 again
    assert signature.verify(subscription.secret, second.body, second.headers["X-Hub-Signature-256"])
    [row] = wait_for(lambda: attempts(redelivery), 10, "its audit row")
    assert row["redelivery_of"] == original and row["status"] == "success" and row["retry"] == 0
    assert row["address"] == "127.0.0.1"
    listed = {entry["delivery_id"]: entry for entry in json.loads(cli("deliveries", "--json").output)}
    assert listed[redelivery]["redelivery_of"] == original


def test_redeliver_of_an_unknown_delivery_is_a_clear_error(cli: Cli) -> None:
    result = cli("redeliver", "no-such-delivery")
    assert result.exit_code == 1
    assert "no request of delivery 'no-such-delivery' is recorded" in result.output


def test_after_rotate_secret_both_secrets_sign_until_the_grace_period_ends_then_the_new_one_alone(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    path = f"/ok/{unique('rotated')}"
    subscription = subscribe(receiver.url(path))

    rotated = run_cli("rotate-secret", subscription.name, env={"WEBHOOK_SECRET_GRACE": "1h"})
    assert rotated.returncode == 0, rotated.stderr
    new_secret = rotated.stdout.split('"')[1]
    assert new_secret != subscription.secret
    assert "two signatures" in rotated.stderr
    time.sleep(CACHE_SECONDS)  # the worker's snapshot of its subscribers is younger than the rotation

    dispatched(cli, a_lead(subscription.shop))
    [during] = wait_for(lambda: receiver.to(path), 30, "a POST during the grace period")
    webhook_id, timestamp = during.headers["webhook-id"], int(during.headers["webhook-timestamp"])
    assert during.headers["webhook-signature"].split(" ") == [
        signature.standard_signature(secret.encode(), webhook_id, timestamp, during.body)
        for secret in (new_secret, subscription.secret)
    ]
    assert during.headers["X-Hub-Signature-256"] == "sha256=" + signature.hex_digest(
        subscription.secret, during.body, "sha256"
    )  # the old secret's alone, so that a whole-header comparison with it matches

    end_grace(subscription.id)  # the grace period over, as an hour later
    time.sleep(CACHE_SECONDS)
    dispatched(cli, a_lead(subscription.shop))
    _, after = wait_for(lambda: len(receiver.to(path)) == 2 and receiver.to(path), 30, "a POST after it")
    assert after.headers["X-Hub-Signature-256"] == "sha256=" + signature.hex_digest(new_secret, after.body, "sha256")
    assert after.headers["webhook-signature"] == signature.standard_signature(
        new_secret.encode(), after.headers["webhook-id"], int(after.headers["webhook-timestamp"]), after.body
    )


def test_rotate_secret_of_an_unknown_subscriber_is_a_clear_error(cli: Cli) -> None:
    result = cli("rotate-secret", "nobody-by-that-name")
    assert result.exit_code == 1
    assert "no subscriber is named 'nobody-by-that-name'" in result.output
