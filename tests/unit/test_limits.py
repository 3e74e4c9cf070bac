"""The per-process in-flight limit per subscriber (tasks.limits)."""

from __future__ import annotations

import pytest

import settings
from tasks import limits


def test_a_subscriber_gets_at_most_its_limit_of_slots_and_a_slot_comes_back_on_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings, "WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIBER", 2)
    with limits.slot(7) as first, limits.slot(7) as second, limits.slot(7) as third, limits.slot(8) as other:
        assert (first, second, third, other) == (True, True, False, True)
        assert limits.in_flight(7) == 2
    assert limits.in_flight(7) == 0
    with limits.slot(7) as again:
        assert again


def test_a_slot_is_given_back_when_the_attempt_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIBER", 1)
    with pytest.raises(RuntimeError), limits.slot(9):
        raise RuntimeError("a bug in the attempt")
    assert limits.in_flight(9) == 0


def test_a_limit_of_zero_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "WEBHOOK_MAX_IN_FLIGHT_PER_SUBSCRIBER", 0)
    with limits.slot(3) as a, limits.slot(3) as b:
        assert a and b
