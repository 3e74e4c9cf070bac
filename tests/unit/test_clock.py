"""The project's one clock, and the shift that runs the suite at another date (make test-shifted)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

import settings
from webhooks.errors import ConfigurationError


def clock_in_a_process(shift: str) -> datetime:
    env = {**os.environ, "CLOCK_SHIFT": shift}
    done = subprocess.run(
        [sys.executable, "-c", "from webhooks import clock; print(clock.utcnow().isoformat())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return datetime.fromisoformat(done.stdout.strip())


def test_the_clock_is_naive_utc_now_without_a_shift() -> None:
    assert abs(clock_in_a_process("0s") - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=1)


def test_a_clock_shift_moves_every_time_the_project_reads_by_that_much() -> None:
    ahead = clock_in_a_process("400d") - datetime.now(UTC).replace(tzinfo=None)
    assert timedelta(days=400) - timedelta(minutes=1) < ahead < timedelta(days=400) + timedelta(minutes=1)
    behind = clock_in_a_process("-2h") - datetime.now(UTC).replace(tzinfo=None)
    assert -timedelta(hours=2) - timedelta(minutes=1) < behind < -timedelta(hours=2) + timedelta(minutes=1)


@pytest.mark.parametrize("raw", ["soon", "1h,2h", "400 days", "+-1d"])
def test_a_malformed_clock_shift_is_refused_naming_the_setting_and_the_value(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="CLOCK_SHIFT=") as refused:
        settings.parse_duration(raw, "CLOCK_SHIFT", signed=True)
    assert repr(raw) in str(refused.value)
    assert "units s, m, h, d" in str(refused.value)


def test_a_secret_grace_of_zero_is_a_duration_not_a_schedule() -> None:
    assert settings.parse_duration("0s", "WEBHOOK_SECRET_GRACE", minimum=0) == 0
    with pytest.raises(ConfigurationError, match=r"WEBHOOK_SECRET_GRACE='-1h' is not one duration") as refused:
        settings.parse_duration("-1h", "WEBHOOK_SECRET_GRACE", minimum=0)
    assert "offsets" not in str(refused.value)  # the retry schedule's words
