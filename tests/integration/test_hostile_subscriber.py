"""A subscriber whose chunked answer never ends, against a real worker with as many threads as
hostile leads: every thread comes back within WEBHOOK_TIMEOUT, the attempt is recorded, healthy
subscribers keep being served, and a warm shutdown needs no SIGKILL (name resolution is not
involved: every URL is a loopback address, allowed by the tests' WEBHOOK_ALLOWED_NETWORKS)."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.leads import unique
from local.recorder import Receiver
from local.services import Worker, procfile_command, wait_for
from tasks import deliver_webhook
from tests.integration.conftest import attempts, message_to, subscriber_at
from tests.support.hostile import MODES, HostileSubscriber

TIMEOUT = 3  # WEBHOOK_TIMEOUT of this worker: longer than the 1 s between two trailer lines


def message(url: str) -> dict[str, Any]:
    return message_to(subscriber_at(url))


@pytest.fixture
def hostile() -> Iterator[HostileSubscriber]:
    server = HostileSubscriber()
    yield server
    server.stop()


@pytest.fixture
def small_worker(database: str, moto: object, logs: Path) -> Iterator[tuple[str, Worker]]:
    """The Procfile's worker with one thread per hostile mode, on a queue of its own."""
    queue = unique("hostile")
    command = procfile_command("worker")
    command[command.index("--concurrency") + 1] = str(len(MODES))
    worker = Worker(logs / f"{queue}.log", {"SQS_QUEUE": queue, "WEBHOOK_TIMEOUT": str(TIMEOUT)}, command)
    yield queue, worker
    if worker.process.poll() is None:
        worker.kill()
    else:
        worker.stop()  # closes its log


def test_a_subscriber_whose_chunked_answer_never_ends_holds_no_worker_thread(
    small_worker: tuple[str, Worker], hostile: HostileSubscriber, receiver: Receiver
) -> None:
    queue, _ = small_worker
    hostile_paths = [f"/{mode}/{unique('worker')}" for mode in MODES]
    hostile_ids = []
    for path in hostile_paths:
        sent = message(hostile.url(path))
        hostile_ids.append(sent["delivery_id"])
        deliver_webhook.apply_async(kwargs={"delivery": sent}, queue=queue)
    wait_for(lambda: all(hostile.requests(path) for path in hostile_paths), 30, "every thread to be on a hostile POST")

    healthy_paths = [f"/ok/{unique('healthy')}" for _ in range(3)]
    healthy_ids = []
    for path in healthy_paths:
        sent = message(receiver.url(path))
        healthy_ids.append(sent["delivery_id"])
        deliver_webhook.apply_async(kwargs={"delivery": sent}, queue=queue)

    # The healthy leads get a thread while the hostile subscriber is still being hit (its retries).
    for delivery_id in healthy_ids:
        [row] = wait_for(lambda: attempts(delivery_id), 30, "a healthy delivery (every thread held?)")  # noqa: B023
        assert row["status"] == "success"
    for delivery_id, path in zip(hostile_ids, hostile_paths, strict=True):
        first = wait_for(lambda: attempts(delivery_id), 30, f"the attempt to {path} to be recorded")[0]  # noqa: B023
        assert first["status"] == "error"
        assert first["error"].startswith(f"timeout after {TIMEOUT} s"), first["error"]
        assert first["duration_ms"] < (TIMEOUT + 4) * 1000  # (a loaded machine's slack)
        wait_for(lambda: hostile.hung_up(path), 10, f"the worker to close its connection to {path}")  # noqa: B023
    wait_for(lambda: all(hostile.requests(path) >= 2 for path in hostile_paths), 30, "the hostile retries")
    assert all(len(receiver.to(path)) == 1 for path in healthy_paths)


def test_a_warm_shutdown_does_not_wait_on_a_subscriber_whose_answer_never_ends(
    small_worker: tuple[str, Worker], hostile: HostileSubscriber
) -> None:
    queue, worker = small_worker
    paths = [f"/{mode}/{unique('shutdown')}" for mode in MODES]
    sent = [message(hostile.url(path)) for path in paths]
    for one in sent:
        deliver_webhook.apply_async(kwargs={"delivery": one}, queue=queue)
    wait_for(lambda: all(hostile.requests(path) for path in paths), 30, "every thread to be on a hostile POST")

    worker.process.send_signal(signal.SIGTERM)  # as a process manager stops it
    try:
        code = worker.process.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the warm shutdown still waited on the hostile subscriber after 30 s:\n{worker.output()[-2000:]}")

    assert code == 0, worker.output()[-2000:]
    for one in sent:
        [row] = attempts(one["delivery_id"])  # recorded before the worker exited
        assert row["error"].startswith(f"timeout after {TIMEOUT} s"), row["error"]
