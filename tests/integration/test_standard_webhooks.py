"""Standard Webhooks: the requests a real worker sent, verified with the official libraries.

``standardwebhooks`` and ``svix`` (whose verifier wraps the former's) are the ones partners
install from PyPI; each request is checked with both, with the ``whsec_`` secret exactly as
``webhooks configure`` and ``webhooks rotate-secret`` printed it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import standardwebhooks
import standardwebhooks.webhooks
import svix.webhooks

from local.leads import a_lead, unique
from local.recorder import Received, Receiver
from local.services import Worker, wait_for
from tests.integration.conftest import CACHE_SECONDS, Cli, attempts, run_cli
from tests.integration.test_delivery import dispatched
from webhooks import clock

LIBRARIES: dict[str, type[standardwebhooks.Webhook] | type[svix.webhooks.Webhook]] = {
    "standardwebhooks": standardwebhooks.Webhook,
    "svix": svix.webhooks.Webhook,
}
TOLERANCE = 5 * 60  # seconds, both libraries'
ROTATED = re.compile(
    r'New secret for (\S+): "([0-9a-f-]{36})"\nStandard Webhooks form of the same secret: (whsec_[A-Za-z0-9+/]+=*)\n'
)


def accepted(whsec: str, body: bytes, headers: dict[str, str]) -> dict[str, bool]:
    """Each library's verdict on a request."""
    verdicts = {}
    for name, library in LIBRARIES.items():
        try:
            library(whsec).verify(body, headers)
            verdicts[name] = True
        except standardwebhooks.WebhookVerificationError:
            verdicts[name] = False
    return verdicts


def both_accept(whsec: str, request: Received) -> bool:
    return accepted(whsec, request.body, request.headers) == {"standardwebhooks": True, "svix": True}


def both_refuse(whsec: str, body: bytes, headers: dict[str, str]) -> bool:
    return accepted(whsec, body, headers) == {"standardwebhooks": False, "svix": False}


@contextmanager
def clock_at(unix_seconds: int) -> Iterator[None]:
    """The libraries' notion of now, moved to ``unix_seconds`` (both read standardwebhooks' clock)."""

    class Moved(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Moved:
            return cls.fromtimestamp(unix_seconds, tz or UTC)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(standardwebhooks.webhooks, "datetime", Moved)
        yield


def seeds_headers(secret: str, body: bytes) -> dict[str, str]:
    return {
        "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }


def test_a_first_attempt_a_retry_and_a_redelivery_are_each_accepted_by_both_libraries(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    path = f"/flaky/1/{unique('standard')}"  # 500 to the first request, then 200
    subscription = subscribe(receiver.url(path))
    [(delivery_id, _, _)] = dispatched(cli, a_lead(subscription.shop))
    first, retry = wait_for(lambda: len(receiver.to(path)) == 2 and receiver.to(path), 30, "the attempt and a retry")
    result = cli("redeliver", delivery_id)
    assert result.exit_code == 0, result.output
    assert f"(redelivery of {delivery_id})" in result.output
    *_, redelivery = wait_for(lambda: len(receiver.to(path)) == 3 and receiver.to(path), 30, "the redelivery")

    # a redelivery keeps the original's webhook-id: the receiver's de-duplication stays meaningful
    assert [request.headers["webhook-id"] for request in (first, retry, redelivery)] == [delivery_id] * 3
    for request in (first, retry, redelivery):
        assert both_accept(subscription.whsec, request), request.headers
        assert {name: request.headers[name] for name in ("X-Hub-Signature", "X-Hub-Signature-256")} == seeds_headers(
            subscription.secret, request.body
        )  # the seed's headers, byte for byte
        assert request.headers["webhook-signature"].count("v1,") == 1
        assert int(request.headers["webhook-timestamp"]) <= request.at
    # Each attempt is signed at its own time: the retry at least its 2 s later (the tests' schedule).
    assert int(retry.headers["webhook-timestamp"]) >= int(first.headers["webhook-timestamp"]) + 2
    assert retry.headers["webhook-signature"] != first.headers["webhook-signature"]
    # The timestamp is the attempt's, as the audit records it.
    rows = wait_for(lambda: len(found := attempts(delivery_id)) == 2 and found, 10, "the audit rows")
    assert [str(clock.wall_seconds(row["attempted_at"])) for row in rows] == [
        first.headers["webhook-timestamp"],
        retry.headers["webhook-timestamp"],
    ]
    assert [row["request_headers"]["webhook-signature"] for row in rows] == [
        first.headers["webhook-signature"],
        retry.headers["webhook-signature"],
    ]


def test_both_libraries_refuse_a_replay_after_five_minutes_a_changed_byte_and_another_subscribers_secret(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    path = f"/ok/{unique('refused')}"
    subscription = subscribe(receiver.url(path))
    someone_else = subscribe(receiver.url(f"/ok/{unique('other')}"))
    dispatched(cli, a_lead(subscription.shop))
    [request] = wait_for(lambda: receiver.to(path), 30, "the POST")
    sent_at = int(request.headers["webhook-timestamp"])
    assert both_accept(subscription.whsec, request)  # now, on the real clock

    with clock_at(sent_at + TOLERANCE):
        assert both_accept(subscription.whsec, request)  # replayed 5 minutes later: still inside
    with clock_at(sent_at + TOLERANCE + 1):
        assert both_refuse(subscription.whsec, request.body, request.headers)  # one second more: too old
    with clock_at(sent_at - TOLERANCE - 1):
        assert both_refuse(subscription.whsec, request.body, request.headers)  # a clock far behind: too new

    middle = len(request.body) // 2
    changed = request.body[:middle] + bytes([request.body[middle] ^ 1]) + request.body[middle + 1 :]
    assert len(changed) == len(request.body) and changed != request.body
    assert both_refuse(subscription.whsec, changed, request.headers)

    assert both_refuse(someone_else.whsec, request.body, request.headers)
    # The whsec_ form is the same key as the seed's: the UUID's UTF-8 bytes.
    assert standardwebhooks.Webhook(subscription.secret.encode()).verify(request.body, request.headers)


def test_during_a_rotation_both_libraries_accept_either_secret_and_x_hub_is_the_old_secrets_alone(
    worker: Worker, receiver: Receiver, subscribe, cli: Cli
) -> None:
    path = f"/flaky/1/{unique('rotation')}"
    subscription = subscribe(receiver.url(path))
    someone_else = subscribe(receiver.url(f"/ok/{unique('other')}"))

    rotated = run_cli("rotate-secret", subscription.name, env={"WEBHOOK_SECRET_GRACE": "1h"})
    assert rotated.returncode == 0, rotated.stderr
    match = ROTATED.fullmatch(rotated.stdout)
    assert match and match.group(1) == subscription.name, rotated.stdout
    new_secret, new_whsec = match.group(2), match.group(3)
    assert new_secret != subscription.secret and new_whsec != subscription.whsec
    assert "v1,<new> v1,<old>" in rotated.stderr and "OLD secret alone" in rotated.stderr
    time.sleep(CACHE_SECONDS)  # the worker's snapshot of its subscribers is younger than the rotation

    dispatched(cli, a_lead(subscription.shop))
    requests = wait_for(lambda: len(receiver.to(path)) == 2 and receiver.to(path), 30, "an attempt and its retry")
    for request in requests:
        assert both_accept(subscription.whsec, request)  # a partner still holding the old secret
        assert both_accept(new_whsec, request)  # one that switched already
        assert both_refuse(someone_else.whsec, request.body, request.headers)
        assert request.headers["webhook-signature"].count("v1,") == 2
        # A verifier comparing X-Hub-Signature* whole, with the old secret, accepts until the grace ends.
        assert {name: request.headers[name] for name in ("X-Hub-Signature", "X-Hub-Signature-256")} == seeds_headers(
            subscription.secret, request.body
        )
