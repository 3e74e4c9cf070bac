"""docs/contract.md's example request is what the worker sends: same body bytes, same signatures."""

from __future__ import annotations

import json
import re

from local.services import ROOT
from producer import leads
from tasks import payload, signature

CONTRACT = (ROOT / "docs" / "contract.md").read_text()
SECRET = "25af5d78-572c-4d29-ae42-999d499f43db"  # the secret the contract's example is signed with


def example_request() -> tuple[dict[str, str], bytes]:
    block = re.search(r"```\n(POST /webhooks HTTP/1\.1\n.*?)```", CONTRACT, re.DOTALL)
    assert block, "docs/contract.md has no example request"
    head, _, body = block.group(1).partition("\n\n")
    headers = dict(line.split(": ", 1) for line in head.splitlines()[1:])
    return headers, body.strip().encode("utf-8")


def test_the_contract_example_body_is_the_bytes_the_worker_builds_from_its_lead() -> None:
    _, body = example_request()
    lead = {key: value for key, value in json.loads(body)["body"].items() if key != "retry"}
    assert payload.encode(payload.build(leads.normalize(lead), 0)) == body


def test_the_contract_example_signatures_are_those_of_its_body_under_the_example_secret() -> None:
    headers, body = example_request()
    signed = signature.headers(headers["webhook-id"], int(headers["webhook-timestamp"]), body, [SECRET])
    assert headers["X-Hub-Signature"] == signed["X-Hub-Signature"]
    assert headers["X-Hub-Signature-256"] == signed["X-Hub-Signature-256"]
    assert headers["webhook-signature"] == signed["webhook-signature"]
    assert f"`{signature.whsec(SECRET)}`" in CONTRACT
    assert f"`{SECRET}`" in CONTRACT
