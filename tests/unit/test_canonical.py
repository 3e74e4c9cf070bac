"""The canonical form and hashes of audit records, against vectors computed with sha256sum."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from records import canonical

RECORD: dict[str, Any] = {
    "delivery_id": "4b0c2f2e-0000-4000-8000-000000000001",
    "lead_id": "ee76725c-53e2-5aa9-b5ec-ef4eddfb6f4d",
    "webhook": "dummy-subscriber",
    "url": "https://dummy-endpoint.com/webhooks",
    "retry": 0,
    "status": "success",
    "http_status": 200,
    "error": None,
    "request_headers": {"webhook-id": "4b0c2f2e-0000-4000-8000-000000000001", "X-Hub-Signature-256": "sha256=ab"},
    "request_body": '{"body":{"city":"La Clusaz","retry":0}}',
    "response_body": "ok é\n",
    "duration_ms": 12.3456,
    "attempted_at": datetime(2026, 11, 28, 1, 2, 3, 4),
    "next_retry_at": None,
}
# Written by hand from the rules of canonical.SPEC; hashed with `printf '%s' '…' | sha256sum`.
CANONICAL = (
    '{"attempted_at":"2026-11-28T01:02:03.000004Z","delivery_id":"4b0c2f2e-0000-4000-8000-000000000001",'
    '"duration_ms":"12.346","error":null,"http_status":200,"lead_id":"ee76725c-53e2-5aa9-b5ec-ef4eddfb6f4d",'
    '"next_retry_at":null,"request_body":"{\\"body\\":{\\"city\\":\\"La Clusaz\\",\\"retry\\":0}}",'
    '"request_headers":{"X-Hub-Signature-256":"sha256=ab","webhook-id":"4b0c2f2e-0000-4000-8000-000000000001"},'
    '"response_body":"ok é\\n","retry":0,"status":"success","type":"delivery_attempt/1",'
    '"url":"https://dummy-endpoint.com/webhooks","webhook":"dummy-subscriber"}'
)
CONTENT_HASH = "82ab8488b80d69b295e6f5f4d1dbb321c942cf5751e4fee9569450f4172a8ccd"
RECORD_HASH = "abc7a3f6312bec376e0ac216d95bc13fa7a60f3e56c84de4962b9edce1d60cd9"
CHECKPOINT_HASH = "247f1f2db7fc6f3be57c3087cc1c30d80d4ae2a849bbfc294a41b37e6cf69662"
# The trail key of the encryption key bytes(range(32)), its id and MACs, computed with OpenSSL 3:
# printf '%s' 'lead-webhooks audit trail v1' | openssl mac -macopt hexkey:000102…1f -macopt size:32 BLAKE2BMAC,
# then `-macopt size:8 BLAKE2BMAC` keyed with it, and `openssl mac -digest SHA256 -macopt hexkey:… HMAC`.
ENCRYPTION_KEY = bytes(range(32))
TRAIL_KEY = "5849c16f5e3a115d73faa4533e1c9e7d163e08968cd7cca52fb96b9320d8f4c1"
KEY_ID = "1fd95c6ea2c3bdc9"
RECORD_MAC = "7e0b0c066428db8191e58033c077b137e97e7bd30332a0a26f4392957e28dafb"
CHECKPOINT_MAC = "bd10603a8e6ef9fe35886e5c28fb20be65e88aa46683fcdceedd6065a054665a"


def test_the_canonical_content_is_sorted_compact_utf8_json_with_times_and_duration_as_strings() -> None:
    assert canonical.canonical(canonical.content(RECORD)) == CANONICAL.encode("utf-8")


def test_the_content_hash_matches_a_known_vector() -> None:
    assert canonical.content_hash(RECORD) == CONTENT_HASH


def test_the_record_hash_matches_a_known_vector() -> None:
    assert canonical.record_hash("host:1:abcdef", 1, None, canonical.ZERO_HASH, CONTENT_HASH) == RECORD_HASH


def test_the_checkpoint_hash_matches_a_known_vector() -> None:
    heads = {"host:1:abcdef": {"id": 7, "seq": 1, "hash": "ff"}}
    moment = datetime(2026, 11, 28)
    assert canonical.checkpoint_hash(2, "checkpoint", moment, canonical.ZERO_HASH, heads, {}, {}) == CHECKPOINT_HASH


def test_the_trail_key_its_id_and_the_macs_match_known_vectors() -> None:
    key = canonical.trail_key(ENCRYPTION_KEY)
    assert key.hex() == TRAIL_KEY
    assert canonical.key_id(key) == KEY_ID
    assert canonical.record_mac(key, RECORD_HASH) == RECORD_MAC
    assert canonical.checkpoint_mac(key, CHECKPOINT_HASH) == CHECKPOINT_MAC


def test_a_record_mac_is_not_a_checkpoint_mac_of_the_same_hash_nor_one_under_another_key() -> None:
    key = canonical.trail_key(ENCRYPTION_KEY)
    other = canonical.trail_key(bytes(32))
    assert canonical.record_mac(key, RECORD_HASH) != canonical.checkpoint_mac(key, RECORD_HASH)
    assert canonical.record_mac(other, RECORD_HASH) != RECORD_MAC
    assert canonical.key_id(other) != KEY_ID


def test_a_time_is_utc_with_six_fractional_digits_whatever_its_offset() -> None:
    naive = datetime(2026, 1, 2, 3, 4, 5)
    assert canonical.moment(naive) == "2026-01-02T03:04:05.000000Z"
    paris = datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    assert canonical.moment(paris) == canonical.moment(naive.replace(tzinfo=UTC)) == "2026-01-02T03:04:05.000000Z"


def test_any_change_to_a_field_changes_the_content_hash() -> None:
    for name, other in {
        "status": "error",
        "http_status": 500,
        "retry": 1,
        "request_body": RECORD["request_body"] + " ",
        "request_headers": {**RECORD["request_headers"], "X-Hub-Signature-256": "sha256=ac"},
        "duration_ms": 12.347,
        "attempted_at": RECORD["attempted_at"] + timedelta(microseconds=1),
        "next_retry_at": RECORD["attempted_at"],
        "error": "",
    }.items():
        assert canonical.content_hash({**RECORD, name: other}) != CONTENT_HASH, name


def test_a_duration_is_hashed_to_the_microsecond_not_beyond() -> None:
    assert canonical.content_hash({**RECORD, "duration_ms": 12.34561}) == CONTENT_HASH


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_the_canonical_form_survives_a_json_round_trip(value: object) -> None:
    # A third party re-reads the evidence JSON with any parser: the bytes must come back the same.
    assert canonical.canonical(json.loads(canonical.canonical(value))) == canonical.canonical(value)


@given(st.dictionaries(st.text(), st.text(), max_size=6))
def test_the_canonical_form_does_not_depend_on_key_order(headers: dict[str, str]) -> None:
    backwards = dict(reversed(list(headers.items())))
    assert canonical.content_hash({**RECORD, "request_headers": headers}) == canonical.content_hash(
        {**RECORD, "request_headers": backwards}
    )


def test_the_standalone_verifier_agrees_with_the_canonical_module(tmp_path: Path) -> None:
    """records/evidence_check.py re-implements the hashes with the standard library only."""
    record = canonical.content(RECORD)
    link = {"chain": "c", "seq": 1, "prev_id": None, "prev_hash": canonical.ZERO_HASH, "content_hash": CONTENT_HASH}
    record_hash = canonical.record_hash("c", 1, None, canonical.ZERO_HASH, CONTENT_HASH)
    heads = {"c": {"id": 7, "seq": 1, "hash": record_hash}}
    moment = datetime(2026, 11, 28)
    key = canonical.trail_key(ENCRYPTION_KEY)
    link.update(key_id=KEY_ID, mac=canonical.record_mac(key, record_hash))
    checkpoint_digest = canonical.checkpoint_hash(2, "checkpoint", moment, "ab", heads, {}, {})
    checkpoint = {
        **{k: v for k, v in canonical.checkpoint(2, "checkpoint", moment, "ab", heads, {}, {}).items() if k != "type"},
        "record_hash": checkpoint_digest,
        "key_id": KEY_ID,
        "mac": canonical.checkpoint_mac(key, checkpoint_digest),
    }
    body = str(RECORD["request_body"]).encode()
    document = {
        "deliveries": [
            {
                "attempts": [
                    {
                        "id": 7,
                        "record": record,
                        "link": {**link, "record_hash": record_hash},
                        "request_body_base64": base64.b64encode(body).decode(),
                    }
                ]
            }
        ],
        "chains": {"c": {"sealed_by": 2, "links": [{"id": 7, **link, "record_hash": record_hash}]}},
        "checkpoints": [checkpoint],
    }
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(document, indent=1))
    script = Path(canonical.__file__).with_name("evidence_check.py")
    done = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    assert "FAILED" not in done.stdout and "every check passed" in done.stdout
    assert "MACs not checked: no --trail-key given" in done.stdout

    checked = subprocess.run(
        [sys.executable, str(script), str(path), "--trail-key", TRAIL_KEY], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout
    assert f"ok      record 7 (chain c, seq 1): MAC under trail key {KEY_ID}" in checked.stdout
    assert f"ok      chain c seq 1: MAC under trail key {KEY_ID}" in checked.stdout
    assert f"ok      checkpoint #2: MAC under trail key {KEY_ID}" in checked.stdout

    checkpoint["mac"] = canonical.checkpoint_mac(canonical.trail_key(bytes(32)), checkpoint_digest)
    path.write_text(json.dumps(document))
    forged = subprocess.run(
        [sys.executable, str(script), str(path), "--trail-key", TRAIL_KEY], capture_output=True, text=True
    )
    assert forged.returncode == 1
    assert f"FAILED  checkpoint #2: MAC under trail key {KEY_ID}" in forged.stdout

    bad = subprocess.run(
        [sys.executable, str(script), str(path), "--trail-key", "00ff"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "a trail key is 64 hex digits" in bad.stderr

    record["status"] = "error"
    path.write_text(json.dumps(document))
    done = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "FAILED  record 7 (chain c, seq 1): content hash" in done.stdout
