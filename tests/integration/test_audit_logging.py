"""The audit is written on purpose, not through logging: no logging configuration stops it."""

from __future__ import annotations

import logging
import logging.config
import uuid
from collections.abc import Iterator

import pytest

from local.recorder import Receiver
from tasks import delivery
from tests.integration.conftest import attempts, message_to, subscriber_at


@pytest.fixture
def logging_switched_off() -> Iterator[None]:
    """What a process importing the tasks may do to logging: a dictConfig with its default
    disable_existing_loggers=True, and logging.disable up to CRITICAL."""
    delivery_logger = logging.getLogger("webhooks.delivery")
    was_disabled = delivery_logger.disabled
    logging.config.dictConfig({"version": 1, "root": {"level": "CRITICAL"}})
    logging.disable(logging.CRITICAL)
    try:
        assert delivery_logger.disabled  # the reconfiguration reached the delivery logger
        yield
    finally:
        logging.disable(logging.NOTSET)
        delivery_logger.disabled = was_disabled


@pytest.mark.parametrize("path", ["/ok/logging-off", "/fail/logging-off"])
def test_an_attempt_is_recorded_whatever_logging_is_configured_to(
    audit_db: str, receiver: Receiver, logging_switched_off: None, path: str
) -> None:
    message = message_to(subscriber_at(receiver.url(f"{path}/{uuid.uuid4().hex}")))

    delivery.process(message, delivery.Arrival("task-id", redelivered=False))

    [row] = attempts(message["delivery_id"])
    assert row["status"] == ("success" if path.startswith("/ok") else "error"), row["error"]
    assert row["url"].startswith(receiver.url(path))
