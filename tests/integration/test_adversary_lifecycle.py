"""Adversary review: operator mistakes and upgrades around the subscriber lifecycle (key
rotation with held deliveries, a deleted subscriber's id given to a new one, a message of the
earlier form whose subscriber is gone). Each failed before its fix."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import settings
from local.leads import a_lead, unique
from local.recorder import Receiver
from local.services import Worker, wait_for
from producer import lifecycle, subscribers
from records import database as db
from records import deliveries, migrations
from tasks.delivery import Arrival, process
from tasks.directory import directory
from tests.integration.conftest import Cli, attempts, message_to
from tests.support.factories import a_message
from webhooks import secretbox

OLD_KEY = bytes(range(100, 132))  # the key before the rotation; tests/conftest.py's TEST_KEY is the new one


def test_held_deliveries_are_sent_on_enable_after_a_key_rotation_done_as_documented(
    own_worker: Callable[..., tuple[str, Worker]],
    receiver: Receiver,
    subscribe,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = f"/ok/{unique('held-across-rotation')}"
    subscription = subscribe(receiver.url(path))
    assert cli("disable", subscription.name).exit_code == 0
    # held while OLD signed the messages: the worker parked it as it was
    content = {key: value for key, value in message_to(subscription).items() if key != "mac"}
    parked = secretbox.authenticate(content, keys=[OLD_KEY])
    row = deliveries.New(
        content["delivery_id"], content["delivery_id"], content["lead"]["id"], subscription.id, subscription.name
    )
    # (parked from a queue no worker serves yet: only `webhooks enable` sends it again)
    queue = unique("rotated-held")
    assert deliveries.park(parked, row, "held: its subscriber is disabled (webhooks disable)", queue).parked

    # the rotation: NEW,OLD everywhere, reencrypt-secrets, then OLD dropped
    monkeypatch.setattr(settings, "ENCRYPTION_KEYS", (settings.ENCRYPTION_KEYS[0], OLD_KEY))
    assert cli("reencrypt-secrets").exit_code == 0
    monkeypatch.setattr(settings, "ENCRYPTION_KEYS", (settings.ENCRYPTION_KEYS[0],))

    enabled = cli("enable", subscription.name)
    still_held = {held.delivery_id for held in deliveries.held(subscription.id)}
    assert enabled.exit_code == 0 or content["delivery_id"] in still_held, f"lost: {enabled.output}"
    assert enabled.exit_code == 0, enabled.output
    assert "1 held deliveries sent again" in enabled.output and deliveries.held(subscription.id) == []
    own_worker(SQS_QUEUE=queue)  # a worker of the queue it was taken from, where enable sent it
    [post] = wait_for(lambda: receiver.to(path), 30, "the held delivery")
    assert post.headers["webhook-id"] == content["delivery_id"]


@pytest.fixture
def sqlite_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The platform and audit databases in one SQLite file (DATABASE_URL's default kind), this test's own."""
    url = f"sqlite:///{tmp_path / 'webhooks.sqlite3'}"
    monkeypatch.setattr(settings, "DATABASE_URL", url)
    monkeypatch.setattr(settings, "AUDIT_DATABASE_URL", url)
    migrations.upgrade()
    directory.forget()
    yield url
    directory.forget()
    db.engine(url).dispose()
    db.autocommit_engine(url).dispose()


def test_a_queued_lead_of_a_deleted_subscriber_never_reaches_the_subscriber_created_with_its_id(
    sqlite_platform: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from tasks import directory as cache

    monkeypatch.setattr(cache, "SKEW", timedelta(0))  # one clock here: a snapshot loaded now covers the message
    shop, gone_path, new_path = unique("shop"), f"/ok/{unique('deleted')}", f"/ok/{unique('newcomer')}"
    subscribers.configure(gone := unique("deleted"), receiver.url(gone_path), ["facebook_form"], [shop])
    gone_id = subscribers.named(gone).id
    # enqueued by hand (deliver_webhook.delay), as subscribers.md allows: no platform row to end it
    queued = a_message(subscriber_id=gone_id, webhook=gone, lead=a_lead(shop)).sealed()
    lifecycle.delete(gone)
    subscribers.configure(newcomer := unique("newcomer"), receiver.url(new_path), ["call"], [unique("shop")])
    assert subscribers.named(newcomer).id == gone_id  # SQLite reuses the highest id once deleted

    process(queued, Arrival(broker_id=queued["delivery_id"], redelivered=False))

    assert receiver.to(new_path) == [] and receiver.to(gone_path) == []
    assert [row["status"] for row in attempts(queued["delivery_id"])] == ["cancelled"]


def test_a_message_of_the_earlier_form_whose_subscriber_is_gone_ends_cancelled_instead_of_looping(
    database: str, receiver: Receiver
) -> None:
    # as cb23f48 sealed it: URL and sealed secret inside, no subscriber_id, no issued_at
    earlier: dict[str, Any] = {
        "delivery_id": str(uuid.uuid4()),
        "webhook": unique("deleted-before-the-upgrade"),
        "url": receiver.url(f"/ok/{unique('earlier')}"),
        "secret": secretbox.seal(base64.b64encode(b"old").decode()),
        "lead": a_lead(unique("shop")),
        "retry": 1,
    }
    sealed = secretbox.authenticate(earlier)
    directory.forget()

    again = process(sealed, Arrival(broker_id=earlier["delivery_id"]))

    assert again is None
    assert [row["status"] for row in attempts(earlier["delivery_id"])] == ["cancelled"]
