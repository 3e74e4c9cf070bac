"""Signatures against published HMAC test vectors, and the GitHub webhook example."""

from __future__ import annotations

from tasks import signature


def test_sha1_matches_rfc_2202_test_case_2() -> None:
    assert signature.hex_digest("Jefe", b"what do ya want for nothing?", "sha1") == (
        "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
    )


def test_sha256_matches_rfc_4231_test_case_2() -> None:
    assert signature.hex_digest("Jefe", b"what do ya want for nothing?", "sha256") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_sha256_header_matches_githubs_documented_example() -> None:
    headers = signature.headers("It's a Secret to Everybody", b"Hello, World!")
    assert headers["X-Hub-Signature-256"] == ("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
    assert headers["X-Hub-Signature"].startswith("sha1=") and len(headers["X-Hub-Signature"]) == 45


def test_verify_accepts_both_headers_and_refuses_a_changed_body() -> None:
    headers = signature.headers("secret", b'{"body":{}}')
    assert signature.verify("secret", b'{"body":{}}', headers["X-Hub-Signature"])
    assert signature.verify("secret", b'{"body":{}}', headers["X-Hub-Signature-256"])
    assert not signature.verify("secret", b'{"body":{} }', headers["X-Hub-Signature-256"])
    assert not signature.verify("other", b'{"body":{}}', headers["X-Hub-Signature-256"])
    assert not signature.verify("secret", b'{"body":{}}', "md5=" + headers["X-Hub-Signature"][5:])


def test_during_a_rotation_each_header_carries_both_signatures_newest_first() -> None:
    headers = signature.headers("new", b"{}", "old")
    new, old = headers["X-Hub-Signature-256"].split(",")
    assert new == "sha256=" + signature.hex_digest("new", b"{}", "sha256")
    assert old == "sha256=" + signature.hex_digest("old", b"{}", "sha256")
    assert headers["X-Hub-Signature"].count("sha1=") == 2
    for secret in ("new", "old"):
        assert signature.verify(secret, b"{}", headers["X-Hub-Signature-256"])
        assert signature.verify(secret, b"{}", headers["X-Hub-Signature"])
    assert not signature.verify("other", b"{}", headers["X-Hub-Signature-256"])
