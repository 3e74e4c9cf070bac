"""What a worker tells monitors about its tasks: the summary set at publish, never a lead.

Celery answers ``inspect reserved``, ``scheduled`` and ``query_task`` (and ``active`` unless asked
``safe``) with each task's full arguments; Flower 2.2 asks for them on a worker's page, and
``celery inspect reserved`` prints them: the lead's personal data. Here a task's ``info()``
always gives Celery's ``argsrepr``/``kwargsrepr`` instead: the summary every publisher of
``deliver_webhook`` sets (delivery id, subscriber, lead id), as the task events already carry.
"""

from __future__ import annotations

from typing import Any

from celery.worker.request import Request


class SummaryRequest(Request):  # type: ignore[misc]
    """A Celery request whose description to monitors holds the argument summaries only."""

    def info(self, safe: bool = False) -> dict[str, Any]:
        """Celery's description of the task, with ``args``/``kwargs`` as their publish-time summaries."""
        described: dict[str, Any] = super().info(safe=True)
        return described
