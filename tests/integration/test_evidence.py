"""`webhooks evidence`: a retried delivery, recorded by a real worker, checked as a third party would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from local.leads import a_lead, unique
from local.recorder import Receiver
from local.services import Worker, wait_for
from tests.integration.conftest import Cli, attempts, run_cli


def evidence(cli: Cli, *args: str) -> tuple[str, dict[str, Any]]:
    out = Path(f"/tmp/evidence-{uuid.uuid4().hex}.json")
    try:
        result = cli("evidence", *args, "--out", str(out))
        assert result.exit_code == 0, result.output
        return result.stdout, json.loads(out.read_text(encoding="utf-8"))
    finally:
        out.unlink(missing_ok=True)


def test_the_evidence_of_a_retried_delivery_lists_every_attempt_and_its_hmacs_recompute_from_the_secret(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli, tmp_path: Path
) -> None:
    path = f"/fail/{unique('evidence')}"
    subscription = subscribe(receiver.url(path))
    lead = a_lead(subscription.shop)
    result = cli("dispatch", input=json.dumps(lead))
    assert result.exit_code == 0, result.output
    delivery_id = result.stdout.split()[2]

    # The tests' schedule is 2 s, 4 s: three attempts, then abandoned.
    wait_for(lambda: len(attempts(delivery_id)) == 3, 60, "3 attempts")
    # The worker seals its chains every AUDIT_CHECKPOINT_INTERVAL (2 s in the tests).
    text, document = wait_for(
        lambda: (
            (found := evidence(cli, lead["id"], "--webhook", subscription.name))
            and found[1]["summary"]["unsealed_attempts"] == 0
            and found
        ),
        30,
        "a checkpoint sealing the attempts",
    )

    [delivery] = document["deliveries"]
    assert (delivery["delivery_id"], delivery["webhook"], delivery["url"]) == (
        delivery_id,
        subscription.name,
        subscription.url,
    )
    assert delivery["outcome"] == "abandoned"
    records = [attempt["record"] for attempt in delivery["attempts"]]
    assert [(r["retry"], r["status"], r["http_status"]) for r in records] == [
        (0, "error", 500),
        (1, "error", 500),
        (2, "abandoned", 500),
    ]
    assert [r["response_body"] for r in records] == ["failing on purpose"] * 3
    assert records[0]["next_retry_at"] and records[1]["next_retry_at"] and records[2]["next_retry_at"] is None

    posts = receiver.to(path)
    secret = subscription.secret.encode()
    for attempt, post in zip(delivery["attempts"], posts, strict=True):
        body = base64.b64decode(attempt["request_body_base64"])
        assert body == post.body  # the exact bytes the subscriber received
        headers = attempt["record"]["request_headers"]
        assert headers["webhook-id"] == post.headers["webhook-id"] == delivery_id
        assert headers["X-Hub-Signature-256"] == "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        assert headers["X-Hub-Signature"] == "sha1=" + hmac.new(secret, body, hashlib.sha1).hexdigest()
        assert attempt["hashes_recomputed"] == {"content_hash": True, "record_hash": True}
        assert attempt["mac_authentic"] is True
        assert attempt["sealed_by"] in {checkpoint["seq"] for checkpoint in document["checkpoints"]}
    assert subscription.secret not in json.dumps(document)

    assert f"Evidence: lead {lead['id']} to webhook {subscription.name}: 1 delivery, 3 attempts" in text
    assert f"Delivery {delivery_id} to webhook {subscription.name}: abandoned after 3 attempt(s)" in text
    for number, retry in ((1, 0), (2, 1), (3, 2)):
        assert f"Attempt {number} of 3: retry {retry}, " in text
    assert posts[0].body.decode() in text
    assert "hashes: recomputed, match" in text and "sealed by checkpoint #" in text
    assert "MAC: authenticates under trail key " in text

    # A third party: the verifier from the document itself, the standard library, the secret.
    evidence_file = tmp_path / "evidence.json"
    evidence_file.write_text(json.dumps(document), encoding="utf-8")
    checker = tmp_path / "check.py"
    checker.write_text(document["verifier"], encoding="utf-8")
    checked = subprocess.run(
        [sys.executable, "-I", str(checker), str(evidence_file), "--secret", subscription.secret],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("X-Hub-Signature-256 recomputed from the secret") == 3
    assert "FAILED" not in checked.stdout and "every check passed" in checked.stdout

    wrong = subprocess.run(
        [sys.executable, "-I", str(checker), str(evidence_file), "--secret", "not-the-secret"],
        capture_output=True,
        text=True,
    )
    assert wrong.returncode == 1
    assert wrong.stdout.count("FAILED") == 6  # two signatures on each of the three attempts
    assert "MACs not checked: no --trail-key given" in checked.stdout

    # An auditor given the trail key by the operator checks the MACs too: a holder of the key wrote them.
    printed = cli("audit", "trail-key")
    assert printed.exit_code == 0, printed.output
    key_id, trail_key = printed.stdout.split()[2], printed.stdout.split()[-1]
    with_key = subprocess.run(
        [sys.executable, "-I", str(checker), str(evidence_file), "--trail-key", trail_key],
        capture_output=True,
        text=True,
    )
    assert with_key.returncode == 0, with_key.stdout + with_key.stderr
    assert with_key.stdout.count(f"MAC under trail key {key_id}") >= 3 + 3 + 1  # attempts, their links, a checkpoint
    assert "FAILED" not in with_key.stdout and "not checked" not in with_key.stdout
    other = subprocess.run(
        [sys.executable, "-I", str(checker), str(evidence_file), "--trail-key", "ab" * 32],
        capture_output=True,
        text=True,
    )
    assert other.returncode == 1  # every MAC names a trail key that was not given
    assert (
        f"FAILED  checkpoint #{document['checkpoints'][-1]['seq']}: MAC under trail key {key_id}, which was not given"
        in other.stdout
    )

    # A record the database alone could have changed, MAC and all: the MAC gives it away.
    document["deliveries"][0]["attempts"][0]["link"]["mac"] = "0" * 64
    evidence_file.write_text(json.dumps(document), encoding="utf-8")
    forged = subprocess.run(
        [sys.executable, "-I", str(checker), str(evidence_file), "--trail-key", trail_key],
        capture_output=True,
        text=True,
    )
    assert forged.returncode == 1
    assert forged.stdout.count("FAILED") == 1 and f": MAC under trail key {key_id}" in forged.stdout

    # The session's trail, written by the worker's pool threads, still verifies.
    verified = cli("audit", "verify")
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith("audit trail intact: ")


def test_the_evidence_of_a_delivery_that_succeeds_on_its_retry_shows_both_attempts(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    path = f"/flaky/1/{unique('evidence')}"
    subscription = subscribe(receiver.url(path))
    lead = a_lead(subscription.shop)
    assert cli("dispatch", input=json.dumps(lead)).exit_code == 0

    wait_for(lambda: [a["status"] for a in attempts_of(lead["id"])] == ["error", "success"], 30, "2 attempts")
    text, document = evidence(cli, lead["id"])
    [delivery] = document["deliveries"]
    assert delivery["outcome"] == "success"
    assert [a["record"]["http_status"] for a in delivery["attempts"]] == [500, 200]
    assert "success after 2 attempt(s)" in text

    printed = cli("evidence", lead["id"], "--json")
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout)["deliveries"] == document["deliveries"]


def attempts_of(lead_id: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from records import database
    from records.models import DeliveryAttempt

    with database.audit() as session:
        found = session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.lead_id == lead_id))
        return [{"status": row.status} for row in sorted(found, key=lambda row: row.id)]


def test_the_evidence_of_an_unknown_lead_is_a_clear_error(database: str) -> None:
    lead_id = str(uuid.uuid4())
    done = run_cli("evidence", lead_id)
    assert done.returncode == 1
    assert done.stderr == f"Error: the audit trail has no delivery attempt of lead '{lead_id}'\n"
    assert done.stdout == ""
