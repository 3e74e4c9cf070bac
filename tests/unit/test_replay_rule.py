"""What a worker knows of a message's arrival (tasks.delivery.Arrival) and the replay settings."""

from __future__ import annotations

from datetime import datetime, timedelta

from celery.app.task import Context

import settings
from tasks.delivery import Arrival, broker_id, lateness
from tests.support.factories import a_message
from tests.unit.test_settings import start
from webhooks.clock import from_unix


def test_sqs_sent_time_reads_on_the_projects_clock_whatever_its_shift() -> None:
    assert from_unix(0) == datetime(1970, 1, 1) + timedelta(seconds=settings.CLOCK_SHIFT)
    assert from_unix(1_800_000_000.5) == datetime(2027, 1, 15, 8, 0, 0, 500000) + timedelta(
        seconds=settings.CLOCK_SHIFT
    )


def test_an_arrival_is_what_the_transport_stamped_sqs_message_id_sent_time_and_redelivery() -> None:
    request = Context(id="task-1", sqs_message_id="m-1", sqs_sent_timestamp=1_000, delivery_info={"redelivered": False})
    assert Arrival.of(request) == Arrival("sqs:m-1", redelivered=False, sent_at=from_unix(1), task_id="task-1")


def test_an_arrival_without_sqs_stamps_is_keyed_by_its_task_id_and_checked_as_redelivered() -> None:
    arrival = Arrival.of(Context(id="task-2", sqs_sent_timestamp="1000"))  # not the transport's int: unknown
    assert arrival == Arrival("task:task-2", redelivered=True, sent_at=None, task_id="task-2")


def test_a_broker_id_fits_the_audit_column() -> None:
    assert broker_id("x" * 100) == "sqs:" + "x" * 60
    assert broker_id(None, None) == "task:unknown"


def test_lateness_is_the_time_from_sealing_to_sqs_and_unknown_without_either() -> None:
    sealed = datetime(2030, 1, 1, 12, 0, 0)
    message = a_message(issued_at=sealed)
    assert lateness(message, Arrival("b", sent_at=sealed + timedelta(seconds=90))) == 90.0
    assert lateness(message, Arrival("b", sent_at=sealed - timedelta(seconds=3))) == -3.0  # the sealer's clock ahead
    assert lateness(message, Arrival("b")) is None
    assert lateness(a_message(), Arrival("b", sent_at=sealed)) is None


def test_a_replay_limit_not_longer_than_the_skew_allowance_is_refused_naming_both() -> None:
    done = start(WEBHOOK_REPLAY_SKEW="10m", WEBHOOK_REPLAY_LIMIT="5m")
    assert "WEBHOOK_REPLAY_LIMIT=300 s must be longer than WEBHOOK_REPLAY_SKEW=600 s" in done.stderr + done.stdout
    assert start(WEBHOOK_REPLAY_LIMIT="soon").stderr.count("WEBHOOK_REPLAY_LIMIT='soon' is not one duration") == 1
