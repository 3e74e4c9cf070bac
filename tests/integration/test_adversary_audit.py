"""Adversary review: write access to the audit database alone. ``verify`` reports what such a
writer adds (tests/integration/test_audit_trail.py); here, whether the workers act on it.
Defects found are marked xfail(strict=True) until fixed."""

from __future__ import annotations

import pytest

import settings
from local.recorder import Receiver
from tasks.directory import directory
from tests.integration.conftest import subscriber_at
from tests.integration.test_audit_trail import forged, insert, write


@pytest.mark.xfail(
    strict=True,
    reason="tasks.circuit.recent_outcomes counts every audit row, MACed or not: failures inserted without the "
    "trail key open any subscriber's circuit fleet-wide (failing_since and already_delivered trust them too)",
)
def test_failures_inserted_without_the_trail_key_do_not_open_a_subscriber_s_circuit(
    audit_db: str, receiver: Receiver
) -> None:
    subscription = subscriber_at(receiver.url("/ok/never-failing"))
    [genuine] = write(1)
    previous = None
    for seq in range(1, settings.WEBHOOK_CIRCUIT_MIN_ATTEMPTS + 1):
        values = forged(
            genuine, "intruder:1:000000", seq, previous, webhook=subscription.name, status="error", http_status=500
        )
        previous = insert(values)  # dated as the genuine one: now
    directory.forget()

    state = directory.snapshot().by_id[subscription.id]

    assert not state.circuit.open
