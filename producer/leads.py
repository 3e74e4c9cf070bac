"""Lead intake: a lead as the platform acquired it, checked and normalized.

A lead has the payload body's fields (docs/contract.md) except ``retry``, which the worker adds.
Required: ``id`` (UUID), ``created_at`` (ISO 8601 with an offset), ``lead_type``,
``geolid_shop_id``. Optional: the text fields (null when absent), ``is_geolid`` and
``is_organic`` (false when absent), ``extra_data`` (an object, {} when absent), its objects
and arrays nested at most ``MAX_NESTING`` levels deep.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from functools import partial
from typing import Any, cast

from webhooks.errors import InvalidInput

LEAD_TYPES = ("facebook_form", "instagram_form", "website_form", "call")

# Field order is the payload's order (``retry`` is inserted after ``created_at``).
TEXT_FIELDS = (
    "first_name",
    "last_name",
    "full_name",
    "address",
    "city",
    "zip_code",
    "phone",
    "email",
)
FIELDS = (
    "created_at",
    "id",
    "geolid_shop_id",
    "customer_shop_id",
    "lead_type",
    *TEXT_FIELDS,
    "is_geolid",
    "is_organic",
    "extra_data",
)
MAX_TEXT = 10_000  # characters in one text field
# Levels of objects and arrays in extra_data, itself level 1. Far below what any decoder on the way
# takes (Python's JSON decoder, kombu's and Celery's included, fails near 1,000 levels, less the
# message's own): a lead accepted at dispatch is always decoded by the worker.
MAX_NESTING = 32


class _Refused(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field {field!r} {problem}")


def normalize(lead: object, where: str = "lead") -> dict[str, Any]:
    """The lead in payload order, or InvalidInput naming ``where`` and every wrong field."""
    try:
        return _normalize(lead)
    except InvalidInput as error:
        raise InvalidInput(f"{where}: {error}") from None


def _normalize(given: object) -> dict[str, Any]:
    if not isinstance(given, dict):
        raise InvalidInput(f"a lead must be a JSON object, not {_kind(given)}")
    lead: dict[str, Any] = given
    problems: list[str] = []  # every wrong field, named: a lead is fixed in one go
    unknown = [key for key in lead if key not in FIELDS]
    if unknown:
        shown = ", ".join(repr(key) for key in unknown[:5])
        problems.append(f"unknown field(s) {shown}; allowed fields: {', '.join(FIELDS)}")
    out: dict[str, Any] = {}

    def take(field: str, check: Callable[[Any], Any], *, required: bool = False) -> None:
        try:
            if required and lead.get(field) is None:
                raise _Refused(field, "is required")
            out[field] = check(lead.get(field))
        except _Refused as refused:
            problems.append(str(refused))

    take("created_at", _created_at, required=True)
    take("id", _uuid, required=True)
    take("geolid_shop_id", partial(_text, field="geolid_shop_id", nullable=False), required=True)
    take("customer_shop_id", partial(_text, field="customer_shop_id"))
    take("lead_type", _lead_type, required=True)
    for field in TEXT_FIELDS:
        take(field, partial(_text, field=field))
    for field in ("is_geolid", "is_organic"):
        take(field, partial(_flag, field=field))
    take("extra_data", _extra_data)
    if problems:
        raise InvalidInput("; ".join(problems))
    return {field: out[field] for field in FIELDS}


def _lead_type(value: object) -> str:
    if value not in LEAD_TYPES:
        raise _Refused("lead_type", f"is {value!r}; allowed values: {', '.join(LEAD_TYPES)}")
    return str(value)


def _flag(value: object, field: str) -> bool:
    value = False if value is None else value
    if not isinstance(value, bool):
        raise _Refused(field, f"must be true or false, not {_kind(value)}")
    return value


def _extra_data(extra: object) -> dict[str, Any]:
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise _Refused("extra_data", f"must be a JSON object, not {_kind(extra)}")
    if _nested_beyond(extra, MAX_NESTING):
        raise _Refused(
            "extra_data", f"nests objects and arrays more than {MAX_NESTING} levels deep (at most {MAX_NESTING})"
        )
    try:
        json.dumps(extra, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, TypeError) as error:  # NaN/Infinity, non-JSON values, lone surrogates
        raise _Refused("extra_data", f"is not standard JSON ({error})") from None
    except RecursionError:  # a structure the nesting check does not walk (not JSON's)
        raise _Refused("extra_data", f"nests more than {MAX_NESTING} levels deep") from None
    return extra


def _nested_beyond(value: object, limit: int) -> bool:
    """Whether ``value`` holds objects or arrays more than ``limit`` levels deep (``value`` itself,
    an object or array, is level 1); read without recursion, stopping at the first too deep."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        current, level = stack.pop()
        if level > limit:
            return True
        children = current.values() if isinstance(current, dict) else cast(list[object], current)
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list | tuple))
    return False


def read(data: str | bytes) -> list[object]:
    """Leads from JSON: one object, an array, or JSON Lines (UTF-8, standard JSON only)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidInput(f"the input is not UTF-8 text (byte {error.start}: {error.reason})") from None
    stripped = data.strip().lstrip("\ufeff")
    if not stripped:
        raise InvalidInput("the input holds no lead (expected a JSON object, an array, or JSON Lines)")
    try:
        whole = _loads(stripped)
    except (json.JSONDecodeError, RecursionError):
        return list(_json_lines(stripped.splitlines()))
    return whole if isinstance(whole, list) else [whole]


def _loads(text: str) -> object:
    return json.loads(text, parse_constant=_not_standard)


def _not_standard(constant: str) -> object:
    raise InvalidInput(f"{constant} is not standard JSON")


def _json_lines(lines: Iterable[str]) -> Iterator[object]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield _loads(line)
        except InvalidInput as error:
            raise InvalidInput(f"line {number}: {error}") from None
        except (json.JSONDecodeError, RecursionError) as error:
            raise InvalidInput(f"line {number}: not JSON ({error})") from None


def _created_at(value: object) -> str:
    if not isinstance(value, str):
        raise _Refused("created_at", f"must be an ISO 8601 time with an offset, not {_kind(value)}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _Refused(
            "created_at", f"is {value[:40]!r}, not an ISO 8601 time such as 2005-08-15T15:52:01+00:00"
        ) from None
    if moment.tzinfo is None:
        raise _Refused("created_at", f"is {value[:40]!r}: an offset such as +00:00 is required")
    return moment.isoformat()


def _uuid(value: object) -> str:
    if not isinstance(value, str):
        raise _Refused("id", f"must be a UUID string, not {_kind(value)}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise _Refused("id", f"is {value[:40]!r}, not a UUID") from None


def _text(value: object, field: str, *, nullable: bool = True) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        allowed = "a string or null" if nullable else "a string"
        raise _Refused(field, f"must be {allowed}, not {_kind(value)}")
    if not nullable and not value.strip():
        raise _Refused(field, "must not be empty")
    if len(value) > MAX_TEXT:
        raise _Refused(field, f"is {len(value)} characters long; at most {MAX_TEXT} are allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused(field, "is not valid Unicode text (a lone surrogate)") from None
    if any(ord(char) < 32 and char not in "\t\n\r" for char in value):
        raise _Refused(field, "contains control characters")
    return value


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )
