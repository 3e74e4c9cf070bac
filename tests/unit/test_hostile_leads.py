"""Property tests: whatever a lead holds, it is refused with a clear error or it makes a
payload that serializes, signs and reads back the same. Never another exception."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import standardwebhooks
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local.leads import SPEC_LEAD
from producer import leads
from tasks import payload, signature
from webhooks.errors import InvalidInput

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),  # any code point, lone surrogates and control characters included
    st.builds(lambda char, extra: char * (9_990 + extra), st.characters(codec="utf-8"), st.integers(0, 20)),  # huge
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
fields = st.sampled_from([*leads.FIELDS, "retry", "unknown", ""])
hostile_leads = st.dictionaries(fields, json_values, max_size=20).map(lambda changes: {**SPEC_LEAD, **changes})


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"x": value}
    return value


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(hostile_leads)
def test_a_hostile_lead_is_refused_clearly_or_signs_and_reads_back_the_same(lead: dict[str, Any]) -> None:
    try:
        normalized = leads.normalize(lead, "lead 0")
    except InvalidInput as error:
        assert str(error).startswith("lead 0: ")
        return
    body = payload.encode(payload.build(normalized, 1))
    headers = {"webhook-id": "d-1", **signature.headers("d-1", int(time.time()), body, ["secret"])}
    assert signature.verify("secret", body, headers["X-Hub-Signature-256"])
    assert standardwebhooks.Webhook(b"secret").verify(body, headers) == json.loads(body)
    assert json.loads(body)["body"] == {**normalized, "retry": 1}
    for value in (normalized["extra_data"], *normalized.values()):
        assert not (isinstance(value, float) and not math.isfinite(value))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_any_input_bytes_are_read_or_refused_clearly(data: bytes) -> None:
    try:
        read = leads.read(data)
    except InvalidInput:
        return
    assert isinstance(read, list)


@given(st.integers(min_value=1, max_value=3000))
@settings(max_examples=25, deadline=None)
def test_nested_extra_data_is_accepted_or_refused_never_crashing(depth: int) -> None:
    try:
        normalized = leads.normalize({**SPEC_LEAD, "extra_data": nested(depth)})
    except InvalidInput as error:
        assert "extra_data" in str(error)
        return
    payload.encode(payload.build(normalized, 0))
