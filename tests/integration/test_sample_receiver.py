"""The sample receiver of `make run` (local/receiver.py) with the real worker: it verifies the
signatures of a subscriber of the user's, and labels each attempt by its lead and retry."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.leads import unique
from local.services import ROOT, Worker, free_port, port_open, wait_for
from tasks import deliver_webhook
from tests.integration.conftest import Subscription, message_to


class SampleReceiver:
    """``python -m local.receiver`` on a free port, sharing the tests' database (as with make run)."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.log = tmp_path / "receiver.log"
        env = {
            **os.environ,
            "LOCAL_RECEIVER_PORT": str(self.port),
            "LOCAL_SECRETS_FILE": str(tmp_path / "no-demo-secrets.json"),  # none of the demo's
            "PYTHONUNBUFFERED": "1",
        }
        with open(self.log, "wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "local.receiver"], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        wait_for(lambda: port_open(self.port), 30, "the sample receiver to listen")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def lines(self, name: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.startswith(f"{name}: ")]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def sample(tmp_path: Path) -> Iterator[SampleReceiver]:
    receiver = SampleReceiver(tmp_path)
    yield receiver
    receiver.stop()


def configured(name: str, url: str) -> Subscription:
    from producer import subscribers
    from tasks import signature

    shop = unique("shop")
    secret = subscribers.configure(name, url, ["facebook_form"], [shop])
    return Subscription(name, secret, shop, url, signature.whsec(secret), subscribers.named(name).id)


def test_a_subscriber_of_the_users_at_the_sample_receiver_is_verified_with_its_secret_from_the_database(
    worker: Worker, sample: SampleReceiver
) -> None:
    name = unique("mine")
    subscription = configured(name, sample.url(f"/hooks/{name}"))
    delivery = message_to(subscription)
    deliver_webhook.apply_async(kwargs={"delivery": delivery})

    [line] = wait_for(lambda: sample.lines(name), 60, "the delivery at the sample receiver")
    lead = delivery["lead"]
    assert line == (
        f"{name}: signature verified, webhook-id {delivery['webhook_id']}, "
        f"lead {lead['id']} facebook_form retry 0, answering 200"
    )


def test_the_sample_receiver_labels_each_retry_by_its_number_and_says_how_to_make_it_know_a_secret(
    worker: Worker, sample: SampleReceiver
) -> None:
    name, stranger = unique("mine"), unique("unknown")  # no subscriber is named as its path says
    subscription = configured(name, sample.url(f"/hooks/{stranger}"))
    delivery = message_to(subscription)
    deliver_webhook.apply_async(kwargs={"delivery": delivery})

    lines = wait_for(lambda: len(sample.lines(stranger)) == 3 and sample.lines(stranger), 60, "three attempts")
    for retry, line in enumerate(lines):  # WEBHOOK_RETRY_SCHEDULE=2s,4s: three attempts, none a duplicate
        assert f"lead {delivery['lead']['id']} facebook_form retry {retry}, answering 401" in line
        assert "(duplicate)" not in line
        assert f"signature INVALID: no secret known for {stranger!r}" in line
        assert "configure yours with --url http://HOST:PORT/hooks/<its name>" in line
