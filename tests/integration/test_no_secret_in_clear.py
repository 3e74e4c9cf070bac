"""A run's logs, audit rows, queue messages and CLI output never hold a secret in clear."""

from __future__ import annotations

import base64
import json
import os
from functools import partial
from pathlib import Path

from sqlalchemy import text

from local.leads import a_lead, unique
from local.recorder import Receiver
from local.services import Worker, wait_for
from records import database
from tests.integration.conftest import Cli, attempts, queue_bodies, run_cli
from tests.support.factories import decoded_layers


def finished(delivery_id: str) -> bool:
    return any(row["status"] in {"success", "abandoned"} for row in attempts(delivery_id))


def test_no_subscriber_secret_or_encryption_key_appears_in_clear_anywhere(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli, sqs, logs: Path
) -> None:
    ok = subscribe(receiver.url(f"/ok/{unique('scan')}"))
    failing = subscribe(receiver.url(f"/fail/{unique('scan')}"), shop=ok.shop)
    leads = json.dumps([a_lead(ok.shop), a_lead(ok.shop)])
    result = cli("dispatch", input=leads)
    assert result.exit_code == 0, result.output
    inspected = unique("scan-queue")
    others = json.dumps([a_lead(ok.shop), a_lead(ok.shop)])  # (the same leads would not be dispatched twice)
    assert run_cli("dispatch", input=others, env={"SQS_QUEUE": inspected}).returncode == 0
    ids = [line.split()[2] for line in result.output.splitlines() if line.startswith("enqueued delivery")]
    assert len(ids) == 4
    for delivery_id in ids:  # the failing ones run their whole schedule (2 s, 4 s) to abandonment
        wait_for(partial(finished, delivery_id), 60, "the end")

    key = os.environ["WEBHOOK_ENCRYPTION_KEY"]
    forbidden = {
        "a subscriber secret": [ok.secret, failing.secret, ok.whsec, failing.whsec, ok.whsec.removeprefix("whsec_")],
        "the encryption key": [
            key,
            base64.b64decode(key).hex(),
            base64.urlsafe_b64encode(base64.b64decode(key)).decode(),
        ],
    }
    with database.audit() as session:
        rows = [" ".join(map(str, row)) for row in session.execute(text("SELECT * FROM delivery_attempts"))]
        rows += [" ".join(map(str, row)) for row in session.execute(text("SELECT * FROM webhook_configs"))]
    places = {
        "the worker's log": worker.output(),
        "moto's log": (logs / "moto.log").read_text(errors="replace"),
        "the audit and subscriber tables": "\n".join(rows),
        "the queue messages": "\n".join(decoded_layers(body) for body in queue_bodies(sqs, inspected)),
        "the CLI's output": cli("list", "--json").output + cli("deliveries", "--json").output + result.output,
    }
    assert "abandoned" in places["the audit and subscriber tables"]  # the run did fail, retry and give up
    assert len(places["the queue messages"]) > 1000
    for place, content in places.items():
        for what, values in forbidden.items():
            for value in values:
                assert value not in content, f"{what} in clear in {place}"
