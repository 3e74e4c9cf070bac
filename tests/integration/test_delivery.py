"""A lead goes from the CLI through moto's SQS and a real worker to a loopback receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from urllib.parse import urlsplit

import standardwebhooks
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local.leads import a_lead, unique
from local.recorder import Receiver
from local.services import Worker, wait_for
from producer.leads import FIELDS
from tests.integration.conftest import Cli, attempts, deliveries_json, queue_bodies, run_cli
from tests.support.factories import decoded_layers, task_kwargs

ENQUEUED = re.compile(r"enqueued delivery ([0-9a-f-]{36}) lead ([0-9a-f-]{36}) to (\S+)")


def dispatched(cli: Cli, leads: object) -> list[tuple[str, str, str]]:
    result = cli("dispatch", input=json.dumps(leads))
    assert result.exit_code == 0, result.output
    return ENQUEUED.findall(result.output)


def test_a_lead_dispatched_from_the_cli_reaches_the_subscriber_signed_and_audited(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    path = f"/ok/{unique('e2e')}"
    subscription = subscribe(receiver.url(path))
    lead = a_lead(subscription.shop)

    [(delivery_id, lead_id, webhook)] = dispatched(cli, lead)
    assert (lead_id, webhook) == (lead["id"], subscription.name)

    [request] = wait_for(lambda: receiver.to(path), 30, "the POST")
    secret = subscription.secret.encode()
    assert request.headers["X-Hub-Signature"] == "sha1=" + hmac.new(secret, request.body, hashlib.sha1).hexdigest()
    assert (
        request.headers["X-Hub-Signature-256"] == "sha256=" + hmac.new(secret, request.body, hashlib.sha256).hexdigest()
    )
    assert request.headers["webhook-id"] == delivery_id
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("lead-webhooks/")

    row = wait_for(lambda: [r for r in deliveries_json(cli) if r["delivery_id"] == delivery_id], 10, "the audit row")[0]
    assert row["lead_id"] == lead["id"]
    assert row["webhook"] == subscription.name
    assert row["retry"] == 0
    assert row["status"] == "success"
    assert row["http_status"] == 200
    assert row["error"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00", row["attempted_at"])
    assert row["duration_ms"] > 0


def test_the_payload_has_the_exact_shape_and_types_of_the_spec(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    path = f"/ok/{unique('shape')}"
    subscription = subscribe(receiver.url(path))
    lead = a_lead(subscription.shop)
    dispatched(cli, lead)

    [request] = wait_for(lambda: receiver.to(path), 30, "the POST")
    document = json.loads(request.body)
    assert list(document) == ["body"]
    body = document["body"]
    assert list(body) == ["created_at", "retry", *[field for field in FIELDS if field != "created_at"]]
    assert body == {**lead, "retry": 0}
    assert body["created_at"] == "2005-08-15T15:52:01+00:00"
    assert isinstance(body["retry"], int) and body["retry"] == 0
    assert uuid.UUID(body["id"])
    assert body["full_name"] is None
    assert body["is_geolid"] is True and body["is_organic"] is False
    assert body["extra_data"] == {"campaign": "spring", "score": 7, "tags": ["a", "b"]}


def test_a_lead_goes_only_to_subscribers_matching_both_its_type_and_its_shop(
    worker: Worker, receiver: Receiver, subscribe
) -> None:
    from producer.dispatch import dispatch_all

    shop, other_shop = unique("shop"), unique("shop")
    wanted = subscribe(receiver.url(f"/ok/{unique('match')}"), ["facebook_form", "call"], shop)
    wrong_type = subscribe(receiver.url(f"/ok/{unique('type')}"), ["call"], shop)
    wrong_shop = subscribe(receiver.url(f"/ok/{unique('shop')}"), ["facebook_form"], other_shop)

    enqueued = dispatch_all([a_lead(shop, "facebook_form"), a_lead(shop, "website_form"), a_lead(other_shop, "call")])

    assert [item.webhook for item in enqueued.deliveries] == [wanted.name]
    wait_for(lambda: receiver.to(urlsplit(wanted.url).path), 30, "the matching POST")
    assert receiver.to(urlsplit(wrong_type.url).path) == []
    assert receiver.to(urlsplit(wrong_shop.url).path) == []


def test_producer_dispatch_returns_the_delivery_ids(worker: Worker, receiver: Receiver, subscribe) -> None:
    import producer

    path = f"/ok/{unique('py')}"
    subscription = subscribe(receiver.url(path), ["call"])
    ids = producer.dispatch(a_lead(subscription.shop, "call"))

    assert len(ids) == 1 and uuid.UUID(ids[0])
    [request] = wait_for(lambda: receiver.to(path), 30, "the POST")
    assert request.headers["webhook-id"] == ids[0]


def test_deliver_webhook_delay_is_a_public_entry_point(worker: Worker, receiver: Receiver, database: str) -> None:
    from tasks import deliver_webhook
    from tasks.message import DeliveryMessage
    from tests.integration.conftest import subscriber_at

    path = f"/ok/{unique('delay')}"
    subscription = subscriber_at(receiver.url(path))
    lead = a_lead("any-shop")
    delivery_id = str(uuid.uuid4())
    deliver_webhook.delay(
        DeliveryMessage(
            delivery_id=delivery_id, subscriber_id=subscription.id, webhook=subscription.name, lead=lead
        ).sealed()
    )

    [request] = wait_for(lambda: receiver.to(path), 30, "the POST")
    assert request.headers["webhook-id"] == delivery_id
    secret = subscription.secret.encode()
    assert request.headers["X-Hub-Signature"] == "sha1=" + hmac.new(secret, request.body, hashlib.sha1).hexdigest()
    assert json.loads(request.body)["body"]["id"] == lead["id"]


def test_a_redirect_is_not_followed_and_is_recorded_as_a_failure(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    path = f"/redirect/{unique('moved')}"
    subscription = subscribe(receiver.url(path))
    [(delivery_id, _, _)] = dispatched(cli, a_lead(subscription.shop))

    first = wait_for(lambda: attempts(delivery_id), 30, "the first attempt")[0]
    assert first["status"] == "error"
    assert first["http_status"] == 302
    assert "redirects are not followed" in first["error"]
    assert first["next_retry_at"] is not None
    assert receiver.to("/ok/redirected") == []


def test_a_timeout_is_recorded_as_a_failure(worker: Worker, receiver: Receiver, subscribe, cli: Cli) -> None:
    path = f"/slow/10/{unique('slow')}"  # the tests' WEBHOOK_TIMEOUT is 1 s
    subscription = subscribe(receiver.url(path))
    [(delivery_id, _, _)] = dispatched(cli, a_lead(subscription.shop))

    first = wait_for(lambda: attempts(delivery_id), 30, "the first attempt")[0]
    assert first["status"] == "error"
    assert first["http_status"] is None
    assert first["error"].startswith("timeout")
    assert 900 <= first["duration_ms"] < 5000  # cut at about 1 s, not the 10 s answer


def test_the_audit_row_keeps_what_was_sent_and_what_came_back(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    path = f"/ok/{unique('audit')}"
    subscription = subscribe(receiver.url(path))
    [(delivery_id, _, _)] = dispatched(cli, a_lead(subscription.shop))
    [request] = wait_for(lambda: receiver.to(path), 30, "the POST")

    [row] = wait_for(lambda: attempts(delivery_id), 10, "the audit row")
    assert row["url"] == subscription.url
    assert row["request_body"].encode() == request.body
    for header in ("X-Hub-Signature", "X-Hub-Signature-256", "webhook-id", "User-Agent", "Content-Type"):
        assert row["request_headers"][header] == request.headers[header]
    assert row["response_body"] == '{"received": true}'
    assert row["next_retry_at"] is None
    assert subscription.secret not in json.dumps(row, default=str)


def test_a_bad_lead_is_refused_naming_it_and_nothing_from_the_input_is_enqueued(sqs, subscribe) -> None:
    subscription = subscribe("http://127.0.0.1:9/never")
    queue = unique("refused")
    good, bad = a_lead(subscription.shop), a_lead(subscription.shop, lead_type="fax")

    done = run_cli("dispatch", input=json.dumps([good, good, bad]), env={"SQS_QUEUE": queue})

    assert done.returncode != 0
    assert (
        "lead 3: field 'lead_type' is 'fax'; allowed values: facebook_form, instagram_form, website_form, call"
        in done.stderr
    )
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert queue_bodies(sqs, queue) == []


def test_the_queue_message_carries_no_secret_and_no_url_only_its_subscriber(sqs, subscribe) -> None:
    from producer import subscribers

    subscription = subscribe("http://127.0.0.1:9/never")
    queue = unique("inspect")
    done = run_cli("dispatch", input=json.dumps(a_lead(subscription.shop)), env={"SQS_QUEUE": queue})
    assert done.returncode == 0, done.stderr

    [body] = queue_bodies(sqs, queue)
    layers = decoded_layers(body)
    assert subscription.secret not in layers
    assert subscribers.named(subscription.name).sealed_secret not in layers
    assert '"secret"' not in layers and subscription.url not in layers
    assert task_kwargs(body)["delivery"]["subscriber_id"] == subscription.id


def test_a_lead_with_no_matching_subscriber_enqueues_nothing(sqs, database: str) -> None:
    queue = unique("nomatch")
    done = run_cli("dispatch", input=json.dumps(a_lead(unique("nobody"))), env={"SQS_QUEUE": queue})
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "1 lead(s) read, 0 deliveries enqueued, 0 refused" in done.stderr
    assert "lead 1 (" in done.stderr and "): matched no subscriber" in done.stderr
    assert "1 lead(s) matched no enabled subscriber" in done.stderr
    assert queue_bodies(sqs, queue) == []


def test_every_refused_lead_is_named_with_a_summary(sqs, subscribe) -> None:
    subscription = subscribe("http://127.0.0.1:9/never")
    queue = unique("summary")
    batch = [a_lead(subscription.shop), a_lead(subscription.shop, id="x"), {"lead_type": "call"}]

    done = run_cli("dispatch", input="\n".join(json.dumps(lead) for lead in batch), env={"SQS_QUEUE": queue})

    assert done.returncode == 1
    assert "lead 2: field 'id' is 'x', not a UUID" in done.stderr
    assert "lead 3: field 'created_at' is required; field 'id' is required" in done.stderr  # every field named
    assert "3 lead(s) read, 2 refused: nothing was enqueued" in done.stderr
    assert queue_bodies(sqs, queue) == []


def test_a_large_dispatch_on_a_terminal_shows_a_progress_bar_and_a_summary(sqs, subscribe) -> None:
    import os
    import pty
    import subprocess

    from local.services import BIN, ROOT

    subscription = subscribe("http://127.0.0.1:9/never")
    queue = unique("progress")
    batch = "\n".join(json.dumps(a_lead(subscription.shop)) for _ in range(120))
    controller, terminal = pty.openpty()
    done = subprocess.run(
        [str(BIN / "webhooks"), "dispatch"],
        input=batch.encode(),
        stdout=subprocess.PIPE,
        stderr=terminal,
        env={**os.environ, "SQS_QUEUE": queue},
        cwd=ROOT,
        timeout=120,
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)

    assert done.returncode == 0
    assert b"enqueuing" in shown and b"100%" in shown
    assert b"120 lead(s) read, 120 deliveries enqueued, 0 refused" in shown
    assert len(ENQUEUED.findall(done.stdout.decode())) == 120  # stdout is not a terminal: the lines are kept


def test_a_lead_too_big_for_sqs_is_refused_at_dispatch_and_nothing_is_enqueued(sqs, subscribe) -> None:
    subscription = subscribe("http://127.0.0.1:9/never")
    queue = unique("big")
    small, huge = a_lead(subscription.shop), a_lead(subscription.shop, extra_data={"notes": "x" * 700_000})

    done = run_cli("dispatch", input=json.dumps([small, huge]), env={"SQS_QUEUE": queue})

    assert done.returncode == 1
    assert "lead 2: its message would take about" in done.stderr
    assert f"above the limit of 1,048,576 (the MaximumMessageSize of queue {queue})" in done.stderr
    assert queue_bodies(sqs, queue) == []


def test_the_size_limit_is_the_queue_s_own_maximum_message_size(sqs, subscribe) -> None:
    subscription = subscribe("http://127.0.0.1:9/never")
    queue = unique("small")  # as ElasticMQ's queues, or an SQS queue created before 1 MiB messages
    sqs.create_queue(QueueName=queue, Attributes={"MaximumMessageSize": "262144"})
    small, big = a_lead(subscription.shop), a_lead(subscription.shop, extra_data={"notes": "x" * 200_000})

    done = run_cli("dispatch", input=json.dumps([small, big]), env={"SQS_QUEUE": queue})

    assert done.returncode == 1
    assert "lead 2: its message would take about" in done.stderr
    assert f"above the limit of 262,144 (the MaximumMessageSize of queue {queue})" in done.stderr
    assert queue_bodies(sqs, queue) == []


def test_the_size_estimate_is_never_below_what_sqs_receives(sqs, subscribe) -> None:
    from producer.dispatch import sqs_size

    subscription = subscribe("http://127.0.0.1:9/never")
    queue = unique("measure")
    lead = a_lead(subscription.shop, extra_data={"notes": "é" * 60_000, "n": list(range(5000))})
    done = run_cli("dispatch", input=json.dumps(lead), env={"SQS_QUEUE": queue})
    assert done.returncode == 0, done.stderr

    [body] = queue_bodies(sqs, queue)
    from webhooks import secretbox

    message = task_kwargs(body)["delivery"]
    secretbox.check_authentic(message)
    assert len(body) <= sqs_size(message) < 1.1 * len(body)


weird_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=200)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    first_name=weird_text,
    extra=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | weird_text,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(weird_text, inner, max_size=3),
        max_leaves=20,
    ),
)
def test_unusual_but_valid_leads_arrive_intact_with_valid_signatures(
    worker: Worker, receiver: Receiver, subscribe, first_name: str, extra: object
) -> None:
    import producer

    path = f"/ok/{unique('weird')}"
    subscription = subscribe(receiver.url(path))
    lead = a_lead(subscription.shop, first_name=first_name, extra_data={"value": extra})
    [delivery_id] = producer.dispatch(lead)

    [request] = wait_for(lambda: receiver.to(path), 30, "the POST")
    expected = "sha256=" + hmac.new(subscription.secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Hub-Signature-256"] == expected
    verified = standardwebhooks.Webhook(subscription.whsec).verify(request.body, request.headers)
    assert verified == json.loads(request.body)
    assert json.loads(request.body)["body"] == {**lead, "retry": 0}
    assert request.headers["webhook-id"] == delivery_id
