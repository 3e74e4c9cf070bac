"""The sender's deadline watchdog: one thread fires every request's deadline."""

from __future__ import annotations

import threading
import time
from functools import partial

from tasks.sender import _Watchdog


def test_an_alarm_fires_at_its_deadline() -> None:
    watchdog = _Watchdog()
    fired = threading.Event()
    started = time.monotonic()
    watchdog.arm(started + 0.1, fired.set)
    assert fired.wait(5)
    assert time.monotonic() - started >= 0.1


def test_a_cancelled_alarm_never_fires() -> None:
    watchdog = _Watchdog()
    fired = threading.Event()
    alarm = watchdog.arm(time.monotonic() + 0.05, fired.set)
    watchdog.cancel(alarm)
    assert not fired.wait(0.3)


def test_an_earlier_deadline_wakes_the_watchdog_sleeping_until_a_later_one() -> None:
    watchdog = _Watchdog()
    late, early = threading.Event(), threading.Event()
    watchdog.arm(time.monotonic() + 60, late.set)
    time.sleep(0.05)  # the watchdog now sleeps until the late deadline
    watchdog.arm(time.monotonic() + 0.05, early.set)
    assert early.wait(5)
    assert not late.is_set()


def test_alarms_fire_in_order_and_only_the_live_ones() -> None:
    watchdog = _Watchdog()
    fired: list[int] = []
    now = time.monotonic()
    alarms = [watchdog.arm(now + 0.05 * (index + 1), partial(fired.append, index)) for index in range(6)]
    for index in (1, 4):
        watchdog.cancel(alarms[index])
    time.sleep(0.6)
    assert fired == [0, 2, 3, 5]


def test_an_expire_that_raises_does_not_stop_the_watchdog() -> None:
    watchdog = _Watchdog()
    fired = threading.Event()

    def broken() -> None:
        raise OSError("the socket is gone")

    now = time.monotonic()
    watchdog.arm(now + 0.02, broken)
    watchdog.arm(now + 0.05, fired.set)
    assert fired.wait(5)
