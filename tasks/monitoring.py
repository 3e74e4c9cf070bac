"""What a worker tells monitors about its tasks: the summary set at publish, never a lead, and
a delivery's outcome as its reason.

Celery answers ``inspect reserved``, ``scheduled`` and ``query_task`` (and ``active`` unless asked
``safe``) with each task's full arguments; Flower 2.2 asks for them on a worker's page, and
``celery inspect reserved`` prints them: the lead's personal data. Here a task's ``info()``
always gives Celery's ``argsrepr``/``kwargsrepr`` instead: the summary every publisher of
``deliver_webhook`` sets (delivery id, subscriber, lead id), as the task events already carry.

A delivery that failed for good or goes back to SQS (webhooks.errors.DeliveryOutcome) is no bug:
its ``task-failed`` and ``task-retried`` events carry its reason without a traceback.
"""

from __future__ import annotations

from typing import Any

from billiard.einfo import ExceptionWithTraceback
from celery.exceptions import Retry
from celery.worker.request import Request

from webhooks.errors import DeliveryOutcome


class SummaryRequest(Request):  # type: ignore[misc]
    """A Celery request whose description to monitors holds the argument summaries only."""

    def info(self, safe: bool = False) -> dict[str, Any]:
        """Celery's description of the task, with ``args``/``kwargs`` as their publish-time summaries."""
        described: dict[str, Any] = super().info(safe=True)
        return described

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> None:
        """Celery's handling (a retry's too: Celery hands it here); when the task ended with a
        delivery's outcome, its event carries the reason alone, without a traceback.

        Celery's retry event reads the reason as ``exc_info.exception.exc``, where the thread
        pool's wrapper holds the Retry itself (Flower showed ``Retry(Retry(...), None, 0)``):
        the Retry is unwrapped first, its ``exc`` being the reason."""
        raised = exc_info.exception
        if isinstance(raised, ExceptionWithTraceback):
            raised = raised.exc
        reason = raised.exc if isinstance(raised, Retry) else raised
        if isinstance(reason, DeliveryOutcome):
            exc_info.exception = raised
            exc_info.traceback = ""
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
