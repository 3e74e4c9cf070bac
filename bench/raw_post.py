"""The floor: CPU per POST of a plain ``requests.Session`` loop, in a process of its own.

    python -m bench.raw_post URL COUNT BODY_FILE

POSTs the body COUNT times (same headers as a delivery: JSON, user agent, webhook-id, two
signatures) on one keep-alive session and prints one JSON object: the loop's CPU time
(``time.process_time``, start-up and imports excluded) and wall time, per POST.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
import uuid

import requests


def main() -> None:
    url, count, body_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(body_file, "rb") as file:
        body = file.read()
    secret = b"raw-post-secret"
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "lead-webhooks/0.1",
        "webhook-id": str(uuid.uuid4()),
        "X-Hub-Signature": "sha1=" + hmac.new(secret, body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
    }
    session = requests.Session()
    failures = 0
    session.post(url, data=body, headers=headers, timeout=10).close()  # connect outside the measure
    cpu, wall = time.process_time(), time.monotonic()
    for _ in range(count):
        answer = session.post(url, data=body, headers=headers, timeout=10)
        _ = answer.content  # read the answer, as a delivery does
        failures += not answer.ok
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    print(
        json.dumps({"posts": count, "failures": failures, "cpu_ms": cpu * 1000 / count, "wall_ms": wall * 1000 / count})
    )


if __name__ == "__main__":
    main()
