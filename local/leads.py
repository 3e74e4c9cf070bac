"""Sample leads for the tests and the benchmarks: the SPEC's example lead, with fresh ids."""

from __future__ import annotations

import uuid
from typing import Any

SPEC_LEAD: dict[str, Any] = {
    "created_at": "2005-08-15T15:52:01+00:00",
    "id": "ee76725c-53e2-5aa9-b5ec-ef4eddfb6f4d",
    "geolid_shop_id": "shop1",
    "customer_shop_id": "XXX",
    "lead_type": "facebook_form",
    "first_name": "John",
    "last_name": "Doe",
    "full_name": None,
    "address": "1563 cours bayard",
    "city": "La Clusaz",
    "zip_code": "74220",
    "phone": "0609653214",
    "email": "john@example.com",
    "is_geolid": True,
    "is_organic": False,
    "extra_data": {"campaign": "spring", "score": 7, "tags": ["a", "b"]},
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def a_lead(shop: str, lead_type: str = "facebook_form", **fields: Any) -> dict[str, Any]:
    """The SPEC's example lead, with a fresh id, for ``shop``."""
    return {**SPEC_LEAD, "id": str(uuid.uuid4()), "geolid_shop_id": shop, "lead_type": lead_type, **fields}
