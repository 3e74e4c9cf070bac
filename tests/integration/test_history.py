"""Delivery history from the CLI: filters, one delivery's attempts, disabling a subscriber."""

from __future__ import annotations

import json
from datetime import timedelta
from functools import partial

from local.leads import a_lead, unique
from local.recorder import Receiver
from local.services import Worker, wait_for
from tests.integration.conftest import Cli, attempts
from tests.integration.test_delivery import dispatched
from webhooks import clock


def listed(cli: Cli, *filters: str) -> list[dict[str, object]]:
    result = cli("deliveries", "--json", "--limit", "1000", *filters)
    assert result.exit_code == 0, result.output
    rows: list[dict[str, object]] = json.loads(result.output)
    return rows


def test_deliveries_filter_by_subscriber_lead_status_and_time(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    good = subscribe(receiver.url(f"/ok/{unique('hist')}"))
    bad = subscribe(receiver.url(f"/fail/{unique('hist')}"), shop=good.shop)
    first, second = a_lead(good.shop), a_lead(good.shop)
    sent = dispatched(cli, [first, second])
    assert len(sent) == 4
    for delivery_id, _, _ in sent:
        wait_for(partial(attempts, delivery_id), 30, "a first attempt")
    before = clock.now() - timedelta(minutes=1)

    assert {row["webhook"] for row in listed(cli, "--webhook", good.name)} == {good.name}
    assert len(listed(cli, "--webhook", good.name)) == 2
    assert {row["lead_id"] for row in listed(cli, "--lead", first["id"])} == {first["id"]}
    assert {row["webhook"] for row in listed(cli, "--lead", first["id"])} == {good.name, bad.name}
    failing = listed(cli, "--webhook", bad.name, "--status", "error")
    assert failing and {row["status"] for row in failing} == {"error"}
    assert listed(cli, "--webhook", good.name, "--status", "error") == []
    assert len(listed(cli, "--webhook", good.name, "--since", before.isoformat())) == 2
    assert listed(cli, "--webhook", good.name, "--since", (before + timedelta(hours=1)).isoformat()) == []


def test_a_bad_filter_is_refused_naming_what_is_allowed(cli: Cli) -> None:
    result = cli("deliveries", "--since", "yesterday")
    assert result.exit_code == 2
    assert "'yesterday' is not an ISO 8601 date or time" in result.output
    result = cli("deliveries", "--status", "lost")
    assert result.exit_code == 2
    assert "'success', 'error', 'abandoned'" in result.output


def test_show_lists_every_attempt_with_its_request_and_response(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    subscription = subscribe(receiver.url(f"/flaky/1/{unique('show')}"))
    [(delivery_id, _, _)] = dispatched(cli, a_lead(subscription.shop))
    wait_for(lambda: len(attempts(delivery_id)) == 2, 30, "the retry")

    shown = json.loads(cli("show", delivery_id, "--json").output)
    assert [(row["retry"], row["status"], row["http_status"]) for row in shown] == [
        (0, "error", 500),
        (1, "success", 200),
    ]
    assert shown[0]["response_body"] == "failing on purpose"
    assert shown[1]["request_headers"]["webhook-id"] == delivery_id
    assert json.loads(shown[1]["request_body"])["body"]["retry"] == 1

    text = cli("show", delivery_id).output
    assert "retry 0 at" in text and "retry 1 at" in text
    assert "X-Hub-Signature-256: sha256=" in text
    assert "-> failing on purpose" in text


def test_show_of_an_unknown_delivery_is_a_clear_error(cli: Cli) -> None:
    result = cli("show", "no-such-delivery")
    assert result.exit_code == 1
    assert "no attempt of delivery 'no-such-delivery' is recorded" in result.output


def test_a_disabled_subscriber_gets_no_new_deliveries_until_enabled(subscribe, cli: Cli) -> None:
    subscription = subscribe("http://127.0.0.1:9/never")
    other = subscribe("http://127.0.0.1:9/other", shop=subscription.shop)

    assert cli("disable", subscription.name).exit_code == 0
    listed_now = {row["name"]: row for row in json.loads(cli("list", "--json").output)}
    assert listed_now[subscription.name]["enabled"] is False
    assert [webhook for _, _, webhook in dispatched(cli, a_lead(subscription.shop))] == [other.name]

    assert cli("enable", subscription.name).exit_code == 0
    assert sorted(webhook for _, _, webhook in dispatched(cli, a_lead(subscription.shop))) == sorted(
        [subscription.name, other.name]
    )
    result = cli("disable", "nobody-by-that-name")
    assert result.exit_code == 1
    assert "no subscriber is named 'nobody-by-that-name'" in result.output
