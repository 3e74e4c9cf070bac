"""The task's message: what the worker accepts, and what it refuses as malformed."""

from __future__ import annotations

from datetime import datetime

import pytest

from tasks.delivery import Delivery
from tests.support.factories import SPEC_LEAD
from webhooks.errors import MalformedMessage

GOOD = {"webhook": "w", "url": "http://127.0.0.1/h", "secret": "c2VhbGVk", "lead": SPEC_LEAD}


def test_the_task_id_stands_in_for_a_missing_delivery_id() -> None:
    delivery = Delivery.from_message(GOOD, "task-id")
    assert delivery.delivery_id == "task-id"
    assert delivery.retry == 0 and delivery.due_at is None


def test_a_message_survives_a_round_trip_with_its_due_time_in_utc() -> None:
    message = {**GOOD, "delivery_id": "d", "retry": 2, "due_at": "2026-01-01T13:00:00+01:00"}
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
    with pytest.raises(MalformedMessage, match=problem):
        Delivery.from_message(message, "x")
