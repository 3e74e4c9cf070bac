from __future__ import annotations

import json

from local.leads import SPEC_LEAD
from tasks import payload


def test_retry_comes_right_after_created_at_and_the_lead_follows_in_order() -> None:
    built = payload.build(SPEC_LEAD, 3)
    assert list(built) == ["body"]
    keys = list(built["body"])
    assert keys[:3] == ["created_at", "retry", "id"]
    assert built["body"]["retry"] == 3
    assert {key: value for key, value in built["body"].items() if key != "retry"} == SPEC_LEAD


def test_encode_is_compact_utf8_json_that_reads_back_the_same() -> None:
    document = payload.build({**SPEC_LEAD, "city": "Genève"}, 0)
    encoded = payload.encode(document)
    assert encoded.startswith(b'{"body":{"created_at":"2005-08-15T15:52:01+00:00","retry":0,')
    assert "Genève".encode() in encoded
    assert json.loads(encoded) == document


def test_a_retry_does_not_change_the_lead_it_was_built_from() -> None:
    lead = dict(SPEC_LEAD)
    payload.build(lead, 5)
    assert lead == SPEC_LEAD
