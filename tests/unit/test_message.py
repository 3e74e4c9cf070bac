"""The task's message: what the worker accepts, and what it refuses as malformed."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from local.leads import SPEC_LEAD
from tasks.message import DeliveryMessage
from tests.support.factories import a_message
from webhooks import secretbox
from webhooks.errors import MalformedMessage, TamperedMessage

GOOD = a_message(delivery_id="d", subscriber_id=7, webhook="w", lead=SPEC_LEAD).sealed()


def test_a_message_names_its_subscriber_and_carries_no_url_nor_secret() -> None:
    assert GOOD["subscriber_id"] == 7 and GOOD["webhook"] == "w"
    assert not {"url", "secret", "previous_secret"} & set(GOOD)


def test_the_webhook_id_is_the_delivery_id_unless_a_redelivery_keeps_the_original_one() -> None:
    assert DeliveryMessage.read(GOOD).webhook_id == "d"
    redelivery = a_message(delivery_id="r", webhook_id="d", redelivery_of="d").sealed()
    assert DeliveryMessage.read(redelivery).webhook_id == "d"


def test_a_message_is_dated_when_it_is_sealed_under_its_mac() -> None:
    read = DeliveryMessage.read(GOOD)
    assert read.issued_at is not None
    with pytest.raises(TamperedMessage):
        DeliveryMessage.read({**GOOD, "issued_at": "2030-01-01T00:00:00+00:00"})


def test_a_message_survives_a_round_trip_with_its_due_time_in_utc() -> None:
    message = secretbox.authenticate({**GOOD, "retry": 2, "due_at": "2026-01-01T13:00:00+01:00"})
    delivery = DeliveryMessage.read(message)
    assert delivery.due_at == datetime(2026, 1, 1, 12, 0, 0)
    again = DeliveryMessage.read(delivery.sealed())
    assert again.but(issued_at=None) == delivery.but(issued_at=None)


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ("text", "must be an object"),
        ({**GOOD, "webhook": ""}, "'webhook' must be non-empty"),
        ({**GOOD, "webhook": 3}, "'webhook' must be a string"),
        ({**GOOD, "lead": None}, "'lead' is required"),
        ({**GOOD, "lead": "x"}, "'lead' must be an object"),
        ({**GOOD, "retry": -1}, "'retry' must be a whole number"),
        ({**GOOD, "retry": True}, "'retry' must be a whole number"),
        ({**GOOD, "subscriber_id": "7"}, "'subscriber_id' must be a whole number"),
        ({**GOOD, "due_at": "soon"}, "'due_at' must be an ISO 8601 time"),
        ({**GOOD, "colour": "red"}, "unknown field"),
        ({key: value for key, value in GOOD.items() if key != "delivery_id"}, "'delivery_id' is required"),
        ({key: value for key, value in GOOD.items() if key != "subscriber_id"}, "'subscriber_id' is required"),
    ],
)
def test_a_malformed_message_is_refused_with_the_field_named(message: object, problem: str) -> None:
    authentic = secretbox.authenticate(message) if isinstance(message, dict) else message
    with pytest.raises(MalformedMessage, match=problem):
        DeliveryMessage.read(authentic)


def test_a_message_of_the_earlier_form_is_still_read_its_subscriber_found_by_name() -> None:
    legacy = secretbox.authenticate(
        {"delivery_id": "old", "webhook": "w", "url": "http://127.0.0.1/h", "secret": "c2VhbGVk", "lead": SPEC_LEAD}
    )
    read = DeliveryMessage.read(legacy)
    assert (read.subscriber_id, read.webhook, read.webhook_id) == (0, "w", "old")


@pytest.mark.parametrize(
    "change",
    [
        {"subscriber_id": 8},
        {"lead": {**SPEC_LEAD, "email": "x@example.com"}},
        {"delivery_id": "other"},
        {"retry": 3},
        {"mac": "0" * 64},
    ],
)
def test_a_message_changed_after_it_was_authenticated_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(TamperedMessage):
        DeliveryMessage.read({**GOOD, **change})


def test_a_message_authenticated_under_an_unknown_key_is_refused_and_an_old_key_is_accepted() -> None:
    content = {key: value for key, value in GOOD.items() if key != "mac"}
    with pytest.raises(TamperedMessage, match="any configured key"):
        DeliveryMessage.read(secretbox.authenticate(content, [bytes(32)]))
    secretbox.check_authentic(secretbox.authenticate(content, [bytes(32)]), [bytes(range(1, 33)), bytes(32)])


def test_a_message_survives_the_json_round_trip_of_the_queue() -> None:
    assert DeliveryMessage.read(json.loads(json.dumps(GOOD))).webhook == "w"


def test_every_declared_field_is_read_back_from_a_sealed_message() -> None:
    every = a_message(
        retry=1,
        first_failure_at=datetime(2026, 1, 1),
        due_at=datetime(2026, 1, 2),
        held_since=datetime(2026, 1, 1, 6),
        dispatched_at=datetime(2025, 12, 31),
        redelivery_of="o",
        webhook_id="o",
        crashes=2,
    )
    read = DeliveryMessage.read(every.sealed())
    for field in DeliveryMessage.fields():
        if field.name != "issued_at":
            assert getattr(read, field.name) == getattr(every, field.name), field.name
