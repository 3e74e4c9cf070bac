"""A bench-only Celery module for ``make bench``'s breakdown (``--breakdown``): a task doing one
part of a delivery, chosen by BENCH_PART, so that each part is priced inside a worker, next to
the no-op task (bench.noop), under the same broker settings:

- ``post``: what ``tasks.delivery.attempt`` does to send (payload, signatures, SSRF check,
  ``tasks.sender.post`` with its deadline watchdog);
- ``requests``: a plain ``requests.Session`` POST (one session per thread), the raw POST's
  loop body, but inside the worker;
- ``select``: the duplicate check (``tasks.audit.already_delivered``), one SELECT.

Nothing is recorded in the audit. The task takes the same argument as ``deliver_webhook``; the
subscriber's URL comes from the worker's cache of the subscribers (tasks.directory), as a
delivery's does.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import requests

from tasks import audit, destination, payload, sender, signature
from tasks.application import app
from tasks.directory import directory

NAME = "bench.part"
PARTS = ("post", "requests", "select")
_local = threading.local()


@app.task(name=NAME)
def part(delivery: dict[str, Any]) -> None:
    chosen = os.environ.get("BENCH_PART", "")
    body = payload.encode(payload.build(delivery["lead"], 0))
    headers = {"Content-Type": "application/json", "webhook-id": delivery["delivery_id"]}
    subscriber = directory.subscriber(int(delivery["subscriber_id"]), str(delivery["webhook"]), None)
    if subscriber is None:
        raise ValueError(f"subscriber {delivery['webhook']!r} is not in the database")
    if chosen == "post":
        headers.update(signature.headers(delivery["delivery_id"], int(time.time()), body, ["bench"]))
        sender.post(destination.check(subscriber.url), body, headers)
    elif chosen == "requests":
        session = getattr(_local, "session", None)
        if session is None:
            session = _local.session = requests.Session()
        session.post(subscriber.url, data=body, headers=headers, timeout=10).close()
    elif chosen == "select":
        audit.already_delivered(delivery["delivery_id"])
    else:
        raise ValueError(f"BENCH_PART={chosen!r}: one of {PARTS}")


__all__ = ["NAME", "PARTS", "app", "part"]
