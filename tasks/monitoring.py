"""What a worker tells monitors about its tasks: the summary set when the message is built,
never a lead, and a delivery's outcome as its reason.

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
from celery.app.amqp import AMQP
from celery.exceptions import Retry
from celery.worker.request import Request

from tasks.message import summary
from webhooks.errors import DeliveryOutcome

#: The delivery task (tasks.application.deliver_webhook), by name.
DELIVER_WEBHOOK = "tasks.deliver_webhook"


class SummaryAMQP(AMQP):  # type: ignore[misc]
    """Celery's message builder, giving a delivery task its summary as ``argsrepr``/``kwargsrepr``.

    However the task is sent — ``dispatch``, ``deliver_webhook.delay(message)``, ``apply_async``,
    ``app.send_task``, a retry — every message is built here (``as_task_v2``): its headers and its
    ``task-sent`` event (Flower's first view of a task, sent by the publisher with
    ``WORKER_EVENTS``) carry the summary. A ``before_task_publish`` handler could change the
    headers only: the ``task-sent`` event, built with the message, kept the lead's personal data.
    Selected with ``Celery(amqp=...)`` (tasks.application).
    """

    def as_task_v2(
        self, task_id: Any, name: Any, args: Any = None, kwargs: Any = None, *rest: Any, **options: Any
    ) -> Any:
        if name == DELIVER_WEBHOOK:
            arguments = kwargs if isinstance(kwargs, dict) else {}
            positional = args if isinstance(args, list | tuple) else ()
            options["argsrepr"] = "()"
            options["kwargsrepr"] = summary(arguments.get("delivery", positional[0] if positional else None))
        return super().as_task_v2(task_id, name, args, kwargs, *rest, **options)


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
