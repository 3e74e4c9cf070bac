"""A bench-only Celery module: the worker's own app (same broker, transport and settings, the
delivery task too) plus a task that does nothing, so a worker started with

    celery -A bench.noop worker <the Procfile's options>

measures what Celery and kombu cost per task on their own. The no-op task takes the same
argument as ``deliver_webhook`` (a delivery message), so the messages decoded are the same size.
"""

from __future__ import annotations

from typing import Any

from tasks.application import app

NAME = "bench.noop"


@app.task(name=NAME)
def noop(delivery: dict[str, Any]) -> None:
    """Nothing: the message is received, decoded, run, acknowledged (late, as deliveries are)."""


__all__ = ["NAME", "app", "noop"]
