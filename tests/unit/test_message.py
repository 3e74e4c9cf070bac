"""The task's message: what the worker accepts, and what it refuses as malformed."""

from __future__ import annotations

from datetime import datetime

import pytest

from local.leads import SPEC_LEAD
from tasks.delivery import Delivery
from webhooks import secretbox
from webhooks.errors import MalformedMessage, TamperedMessage

GOOD = secretbox.authenticate({"webhook": "w", "url": "http://127.0.0.1/h", "secret": "c2VhbGVk", "lead": SPEC_LEAD})


def test_the_task_id_stands_in_for_a_missing_delivery_id() -> None:
    delivery = Delivery.from_message(GOOD, "task-id")
    assert delivery.delivery_id == "task-id"
    assert delivery.retry == 0 and delivery.due_at is None


def test_a_message_survives_a_round_trip_with_its_due_time_in_utc() -> None:
    message = secretbox.authenticate({**GOOD, "delivery_id": "d", "retry": 2, "due_at": "2026-01-01T13:00:00+01:00"})
    delivery = Delivery.from_message(message, "x")
    assert delivery.due_at == datetime(2026, 1, 1, 12, 0, 0)
    assert Delivery.from_message(delivery.to_message(), "y") == delivery


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ("text", "must be an object"),
        ({**GOOD, "url": ""}, "'url' must be a non-empty string"),
        ({**GOOD, "lead": None}, "'lead' must be an object"),
        ({**GOOD, "retry": -1}, "'retry' must be a whole number"),
        ({**GOOD, "retry": True}, "'retry' must be a whole number"),
        ({**GOOD, "due_at": "soon"}, "'due_at' must be an ISO 8601 time"),
        ({**GOOD, "colour": "red"}, "unknown field"),
    ],
)
def test_a_malformed_message_is_refused_with_the_field_named(message: object, problem: str) -> None:
    authentic = secretbox.authenticate(message) if isinstance(message, dict) else message
    with pytest.raises(MalformedMessage, match=problem):
        Delivery.from_message(authentic, "x")


@pytest.mark.parametrize(
    "change",
    [
        {"url": "http://127.0.0.1/elsewhere"},
        {"lead": {**SPEC_LEAD, "email": "x@example.com"}},
        {"secret": "b3RoZXI="},
        {"retry": 0, "due_at": None},
        {"mac": "0" * 64},
    ],
)
def test_a_message_changed_after_it_was_authenticated_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(TamperedMessage):
        Delivery.from_message({**GOOD, **change}, "x")


def test_a_message_authenticated_under_an_unknown_key_is_refused_and_an_old_key_is_accepted() -> None:
    content = {key: value for key, value in GOOD.items() if key != "mac"}
    with pytest.raises(TamperedMessage, match="any configured key"):
        Delivery.from_message(secretbox.authenticate(content, [bytes(32)]), "x")
    secretbox.check_authentic(secretbox.authenticate(content, [bytes(32)]), [bytes(range(1, 33)), bytes(32)])


def test_a_message_survives_the_json_round_trip_of_the_queue() -> None:
    import json

    assert Delivery.from_message(json.loads(json.dumps(GOOD)), "x").webhook == "w"


@pytest.fixture
def looked_up(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The delivery ids looked up in the audit from now on; each is found already delivered."""
    from tasks import audit

    found: list[str] = []

    def already_delivered(delivery_id: str) -> bool:
        found.append(delivery_id)
        return True

    monkeypatch.setattr(audit, "already_delivered", already_delivered)
    return found


def test_only_a_redelivered_message_is_looked_up_in_the_audit_before_it_is_sent(
    monkeypatch: pytest.MonkeyPatch, looked_up: list[str]
) -> None:
    from tasks import audit, delivery

    attempted: list[str] = []
    monkeypatch.setattr(audit, "writes_succeeding", lambda: True)
    monkeypatch.setattr(delivery, "attempt", lambda sent, now=None: attempted.append(sent.delivery_id))
    message = secretbox.authenticate({**GOOD, "delivery_id": "d"})

    assert delivery.process(message, "task-id", redelivered=False) is None
    assert (looked_up, attempted) == ([], ["d"])  # handed out for the first time: sent, no lookup

    assert delivery.process(message, "task-id", redelivered=True) is None
    assert (looked_up, attempted) == (["d"], ["d"])  # handed out again, already succeeded: dropped


def test_a_first_delivery_is_looked_up_too_while_the_audit_is_not_known_to_be_writable(
    monkeypatch: pytest.MonkeyPatch, looked_up: list[str]
) -> None:
    from tasks import audit, delivery

    monkeypatch.setattr(audit, "writes_succeeding", lambda: False)  # a new worker, or a write failed
    monkeypatch.setattr(delivery, "attempt", lambda sent, now=None: pytest.fail("sent"))

    assert delivery.process(secretbox.authenticate({**GOOD, "delivery_id": "d"}), "t", redelivered=False) is None
    assert looked_up == ["d"]
