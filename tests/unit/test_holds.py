"""A parked delivery sent again (tasks.holds.send_again): due now, sealed anew, its schedule
moved forward by the time it was held."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tasks import holds
from tasks.application import deliver_webhook
from tasks.message import DeliveryMessage
from tests.support.factories import a_message
from webhooks.clock import utcnow


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What ``send_again`` publishes, instead of publishing it."""
    found: list[dict[str, Any]] = []
    monkeypatch.setattr(deliver_webhook, "apply_async", lambda **options: found.append(options))
    return found


def test_a_delivery_held_for_an_hour_keeps_every_retry_it_had_left(published: list[dict[str, Any]]) -> None:
    now = utcnow()
    first_failure, held_since = now - timedelta(hours=3), now - timedelta(hours=1)
    held = a_message(retry=2, first_failure_at=first_failure, due_at=held_since, held_since=held_since)

    assert holds.send_again(held.sealed(), held_at=held_since + timedelta(seconds=1), queue="leads-eu")

    [options] = published
    again = DeliveryMessage.read(options["kwargs"]["delivery"])
    assert options["task_id"] == held.delivery_id and options["queue"] == "leads-eu"  # the queue it came from
    assert again.due_at is None and again.held_since is None and again.retry == 2
    assert again.first_failure_at is not None
    moved = again.first_failure_at - first_failure
    assert timedelta(minutes=59, seconds=59) < moved < timedelta(hours=1, minutes=1)  # by the hour it was held
    assert again.issued_at is not None and again.issued_at >= now  # sealed anew: not a replay


def test_a_parked_delivery_that_never_failed_is_sent_again_due_now(published: list[dict[str, Any]]) -> None:
    held = a_message()
    assert holds.send_again(held.sealed(), held_at=utcnow())
    again = DeliveryMessage.read(published[0]["kwargs"]["delivery"])
    assert again.first_failure_at is None and again.due_at is None and again.retry == 0
    assert published[0]["queue"] is None  # parked before its queue was recorded: this process's own


def test_a_parked_message_that_cannot_be_read_stays_parked(published: list[dict[str, Any]]) -> None:
    tampered = {**a_message().sealed(), "webhook": "someone-else"}
    assert holds.send_again(tampered, held_at=utcnow()) is False
    assert published == []


def test_a_circuit_closed_moments_ago_lets_its_held_deliveries_go_a_batch_at_a_time_doubling() -> None:
    from tasks.circuit import Circuit
    from tests.support.factories import a_state

    now = utcnow()
    just_closed = a_state("http://127.0.0.1:9/", circuit=Circuit(closed_at=now))
    step = timedelta(seconds=holds.TEND_SECONDS)

    assert holds._budget(just_closed, now) == holds.RELEASE_BATCH
    assert holds._budget(just_closed, now + step) == 2 * holds.RELEASE_BATCH
    assert holds._budget(just_closed, now + 3 * step) == 8 * holds.RELEASE_BATCH
    assert holds._budget(just_closed, now + (holds.MAX_DOUBLINGS + 1) * step) is None  # long closed: no bound
    assert holds._budget(a_state("http://127.0.0.1:9/"), now) is None  # never opened (a disabled one enabled)
