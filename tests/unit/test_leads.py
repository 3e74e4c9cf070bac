"""Lead intake: every refusal names the lead, the field and what is allowed."""

from __future__ import annotations

import json

import pytest

from local.leads import SPEC_LEAD
from producer import leads
from webhooks.errors import InvalidInput


def refusal(lead: object) -> str:
    with pytest.raises(InvalidInput) as refused:
        leads.normalize(lead, "lead 4")
    return str(refused.value)


def test_the_spec_example_is_accepted_unchanged_and_in_payload_order() -> None:
    normalized = leads.normalize(dict(reversed(list(SPEC_LEAD.items()))))
    assert normalized == SPEC_LEAD
    assert list(normalized) == list(leads.FIELDS)


def test_optional_fields_default_to_null_false_and_an_empty_object() -> None:
    minimal = {key: SPEC_LEAD[key] for key in ("id", "created_at", "lead_type", "geolid_shop_id")}
    normalized = leads.normalize(minimal)
    assert normalized["first_name"] is None and normalized["customer_shop_id"] is None
    assert normalized["is_geolid"] is False and normalized["extra_data"] == {}


def test_created_at_is_normalized_to_iso_8601_with_its_offset() -> None:
    assert leads.normalize({**SPEC_LEAD, "created_at": "2005-08-15T15:52:01Z"})["created_at"] == (
        "2005-08-15T15:52:01+00:00"
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"lead_type": "fax"}, "lead 4: field 'lead_type' is 'fax'; allowed values: facebook_form, instagram_form"),
        ({"id": "not-a-uuid"}, "lead 4: field 'id' is 'not-a-uuid', not a UUID"),
        ({"id": 12}, "lead 4: field 'id' must be a UUID string, not a number"),
        ({"created_at": "2005-08-15T15:52:01"}, "lead 4: field 'created_at' is '2005-08-15T15:52:01': an offset"),
        ({"created_at": "yesterday"}, "lead 4: field 'created_at' is 'yesterday', not an ISO 8601 time"),
        ({"geolid_shop_id": None}, "lead 4: field 'geolid_shop_id' is required"),
        ({"geolid_shop_id": " "}, "lead 4: field 'geolid_shop_id' must not be empty"),
        ({"first_name": 3}, "lead 4: field 'first_name' must be a string or null, not a number"),
        ({"is_geolid": "yes"}, "lead 4: field 'is_geolid' must be true or false, not a string"),
        ({"extra_data": []}, "lead 4: field 'extra_data' must be a JSON object, not an array"),
        ({"extra_data": {"x": float("nan")}}, "lead 4: field 'extra_data' is not standard JSON"),
        ({"city": "a\x00b"}, "lead 4: field 'city' contains control characters"),
        ({"city": "\ud800"}, "lead 4: field 'city' is not valid Unicode text"),
        ({"city": "x" * 10_001}, "lead 4: field 'city' is 10001 characters long"),
        ({"retry": 0}, "lead 4: unknown field(s) 'retry'; allowed fields: created_at, id"),
    ],
)
def test_a_bad_field_is_refused_with_a_message_naming_it(change: dict[str, object], expected: str) -> None:
    assert expected in refusal({**SPEC_LEAD, **change})


def test_a_lead_with_several_wrong_fields_is_refused_naming_every_one() -> None:
    wrong = {**SPEC_LEAD, "id": "not-a-uuid", "lead_type": "fax", "is_geolid": "yes", "colour": "red"}
    del wrong["geolid_shop_id"]
    message = refusal(wrong)
    named = [
        "lead 4: unknown field(s) 'colour'; allowed fields: ",
        "; field 'id' is 'not-a-uuid', not a UUID; ",
        "; field 'geolid_shop_id' is required; ",
        "; field 'lead_type' is 'fax'; allowed values: ",
        "; field 'is_geolid' must be true or false, not a string",
    ]
    positions = [message.find(each) for each in named]
    assert -1 not in positions and positions == sorted(positions), message


def test_a_lead_that_is_not_an_object_is_refused() -> None:
    assert refusal([1, 2]) == "lead 4: a lead must be a JSON object, not an array"


def nested(levels: int, kind: str = "object") -> dict[str, object]:
    """extra_data (itself the first level) holding objects, or an array of arrays, ``levels`` deep."""
    if kind == "object":
        value: dict[str, object] = {}
        for _ in range(levels - 1):
            value = {"x": value}
        return value
    array: list[object] = []
    for _ in range(levels - 2):
        array = [array]
    return {"list": array}


@pytest.mark.parametrize("kind", ["object", "array"])
def test_extra_data_nested_to_the_limit_is_accepted(kind: str) -> None:
    deepest = nested(leads.MAX_NESTING, kind)
    assert leads.normalize({**SPEC_LEAD, "extra_data": deepest})["extra_data"] == deepest


@pytest.mark.parametrize("levels", [33, 950, 5000])  # 950: what dispatch accepted and no worker could decode
@pytest.mark.parametrize("kind", ["object", "array"])
def test_extra_data_nested_beyond_the_limit_is_refused_naming_the_field_and_the_limit(kind: str, levels: int) -> None:
    assert leads.MAX_NESTING == 32  # documented in docs/incoming/replay.md and the contract
    assert refusal({**SPEC_LEAD, "extra_data": nested(levels, kind)}) == (
        "lead 4: field 'extra_data' nests objects and arrays more than 32 levels deep (at most 32)"
    )


def test_read_takes_an_object_an_array_or_json_lines() -> None:
    one = json.dumps(SPEC_LEAD)
    assert leads.read(one) == [SPEC_LEAD]
    assert leads.read(json.dumps([SPEC_LEAD, SPEC_LEAD])) == [SPEC_LEAD, SPEC_LEAD]
    assert leads.read(f"{one}\n\n{one}\n") == [SPEC_LEAD, SPEC_LEAD]


def test_read_names_the_line_that_is_not_json() -> None:
    with pytest.raises(InvalidInput, match="line 2: not JSON"):
        leads.read('{"a": 1}\n{"b": \n')
    with pytest.raises(InvalidInput, match="holds no lead"):
        leads.read("  \n")


def test_read_refuses_invalid_utf8_and_non_standard_constants() -> None:
    with pytest.raises(InvalidInput, match="not UTF-8 text"):
        leads.read(b'{"id": "\xff"}')
    with pytest.raises(InvalidInput, match="NaN is not standard JSON"):
        leads.read('{"extra_data": {"x": NaN}}')
    with pytest.raises(InvalidInput, match="line 2: Infinity is not standard JSON"):
        leads.read('{"a": 1}\n{"b": Infinity}\n')
    assert leads.read("\ufeff" + json.dumps(SPEC_LEAD).encode().decode()) == [SPEC_LEAD]
