"""Signatures against published test vectors (RFC 2202 and 4231's HMACs, GitHub's webhook
example, the Standard Webhooks specification's), and verified by the official libraries."""

from __future__ import annotations

import base64
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks
import svix.webhooks

from tasks import signature

BODY = b'{"body":{"id":"ee76725c-53e2-5aa9-b5ec-ef4eddfb6f4d","retry":0}}'


def verified_by_both_libraries(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    """Whether standardwebhooks and svix both accept the request; fails if they disagree."""
    verdicts = []
    for library in (standardwebhooks.Webhook, svix.webhooks.Webhook):
        try:
            library(secret).verify(body, headers)
            verdicts.append(True)
        except standardwebhooks.WebhookVerificationError:
            verdicts.append(False)
    assert verdicts[0] == verdicts[1], verdicts
    return verdicts[0]


def test_sha1_matches_rfc_2202_test_case_2() -> None:
    assert signature.hex_digest("Jefe", b"what do ya want for nothing?", "sha1") == (
        "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
    )


def test_sha256_matches_rfc_4231_test_case_2() -> None:
    assert signature.hex_digest("Jefe", b"what do ya want for nothing?", "sha256") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_sha256_header_matches_githubs_documented_example() -> None:
    headers = signature.headers("d1", 1_700_000_000, b"Hello, World!", ["It's a Secret to Everybody"])
    assert headers["X-Hub-Signature-256"] == ("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
    assert headers["X-Hub-Signature"].startswith("sha1=") and len(headers["X-Hub-Signature"]) == 45


def test_the_standard_signature_matches_the_specifications_test_vector() -> None:
    # The vector of the Standard Webhooks libraries' own tests (test_sign_function).
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert signature.standard_signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}') == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_the_whsec_form_is_the_same_key_as_the_seeds_hmacs() -> None:
    secret = "25af5d78-3b2c-4c1e-9f0a-6b1d2e3f4a5b"
    whsec = signature.whsec(secret)
    assert whsec == "whsec_" + base64.b64encode(secret.encode("utf-8")).decode()
    assert base64.b64decode(whsec.removeprefix("whsec_")) == secret.encode("utf-8")
    moment = datetime.fromtimestamp(1614265330, UTC)
    ours = signature.headers("msg_1", 1614265330, BODY, [secret])["webhook-signature"]
    assert standardwebhooks.Webhook(whsec).sign("msg_1", moment, BODY.decode()) == ours
    assert svix.webhooks.Webhook(whsec).sign("msg_1", moment, BODY.decode()) == ours
    # Why the whsec_ form is printed: given the bare UUID, the libraries decode it as base64,
    # silently, into another key.
    assert standardwebhooks.Webhook(secret).sign("msg_1", moment, BODY.decode()) != ours


def test_the_headers_outside_a_rotation_are_the_seeds_and_one_standard_signature() -> None:
    secret, now = str(uuid.uuid4()), int(time.time())
    headers = signature.headers("d-1", now, BODY, [secret])
    assert headers == {
        "X-Hub-Signature": "sha1=" + signature.hex_digest(secret, BODY, "sha1"),
        "X-Hub-Signature-256": "sha256=" + signature.hex_digest(secret, BODY, "sha256"),
        "webhook-timestamp": str(now),
        "webhook-signature": signature.standard_signature(secret.encode(), "d-1", now, BODY),
    }
    assert verified_by_both_libraries(signature.whsec(secret), BODY, {**headers, "webhook-id": "d-1"})
    assert not verified_by_both_libraries(signature.whsec(secret), BODY, {**headers, "webhook-id": "d-2"})
    assert not verified_by_both_libraries(signature.whsec(str(uuid.uuid4())), BODY, {**headers, "webhook-id": "d-1"})


def test_verify_accepts_both_headers_and_refuses_a_changed_body() -> None:
    headers = signature.headers("d", 0, b'{"body":{}}', ["secret"])
    assert signature.verify("secret", b'{"body":{}}', headers["X-Hub-Signature"])
    assert signature.verify("secret", b'{"body":{}}', headers["X-Hub-Signature-256"])
    assert not signature.verify("secret", b'{"body":{} }', headers["X-Hub-Signature-256"])
    assert not signature.verify("other", b'{"body":{}}', headers["X-Hub-Signature-256"])
    assert not signature.verify("secret", b'{"body":{}}', "md5=" + headers["X-Hub-Signature"][5:])


def test_during_a_rotation_webhook_signature_carries_both_and_x_hub_the_old_secrets_alone() -> None:
    new, old, now = str(uuid.uuid4()), str(uuid.uuid4()), int(time.time())
    headers = signature.headers("d-1", now, BODY, [new, old])
    assert headers["webhook-signature"] == " ".join(
        signature.standard_signature(secret.encode(), "d-1", now, BODY) for secret in (new, old)
    )
    # The seed's headers: exactly what a subscriber holding the old secret alone expects, compared whole.
    only_old = signature.headers("d-1", now, BODY, [old])
    assert headers["X-Hub-Signature"] == only_old["X-Hub-Signature"]
    assert headers["X-Hub-Signature-256"] == only_old["X-Hub-Signature-256"]
    for secret in (new, old):
        assert verified_by_both_libraries(signature.whsec(secret), BODY, {**headers, "webhook-id": "d-1"})
    assert not verified_by_both_libraries(signature.whsec(str(uuid.uuid4())), BODY, {**headers, "webhook-id": "d-1"})


def test_no_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        signature.headers("d", 0, b"{}", [])


def test_the_timestamp_is_the_wall_clock_s_unix_seconds_of_the_attempt_naive_read_as_utc() -> None:
    import settings
    from webhooks import clock

    shift = timedelta(seconds=settings.CLOCK_SHIFT)  # the project's clock runs ahead in make test-shifted
    assert clock.wall_seconds(datetime(2021, 2, 25, 15, 2, 10) + shift) == 1614265330
    assert clock.wall_seconds(datetime(2021, 2, 25, 15, 2, 10, 999999, tzinfo=UTC) + shift) == 1614265330
