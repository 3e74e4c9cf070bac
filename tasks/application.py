"""The Celery application: SQS broker, late acknowledgement, no result backend.

The broker transport is kombu's SQS transport as adjusted in ``tasks.transport``; with
WORKER_EVENTS on, it carries task events and remote control (Flower, ``celery inspect``)
through SNS, and workers sweep the monitoring queues of crashed processes every hour.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from celery import Celery, Task, bootsteps, signals
from celery.exceptions import Reject, Retry

import settings
from tasks import audit, holds, operations, transport
from tasks.delivery import BACKOFF, Arrival, Failed, after_crash, process, revoked
from tasks.message import summary
from webhooks import secretbox
from webhooks.errors import ConfigurationError, DeliveryFailed, DeliveryRetried, WebhookError

log = logging.getLogger(audit.LOGGER_NAME)

# amqp: every delivery message is built with its summary for monitors (tasks/monitoring.py)
app = Celery("webhooks", amqp="tasks.monitoring:SummaryAMQP")
app.conf.update(
    broker_url=settings.BROKER_URL,
    # kombu's SQS transport, adjusted (tasks/transport.py); the URL keeps sqs://
    broker_transport="tasks.transport:Transport",
    broker_transport_options={
        "region": settings.SQS_REGION,
        # starts every queue and SNS topic name: environments sharing an account stay apart
        "queue_name_prefix": settings.SQS_QUEUE_PREFIX,
        "visibility_timeout": settings.SQS_VISIBILITY_TIMEOUT,
        "wait_time_seconds": settings.SQS_WAIT_TIME_SECONDS,
        "polling_interval": settings.SQS_POLLING_INTERVAL,
        # SNS fanout: events reach Flower, workers answer remote control
        "supports_fanout": settings.WORKER_EVENTS,
    },
    worker_send_task_events=settings.WORKER_EVENTS,
    task_send_sent_event=settings.WORKER_EVENTS,
    broker_connection_retry_on_startup=True,
    task_default_queue=settings.SQS_QUEUE,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    # A message is deleted from SQS only once its task has returned; a killed child
    # gives its message back instead of losing it.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # A task that raises (a delivery failed for good, after its record; a bug) has its message
    # deleted like a returning one's (Celery's default, relied upon: never redelivered for it).
    task_acks_on_failure_or_timeout=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
    # a message the worker removes without running a task (undecodable, unknown) is recorded
    worker_consumer="tasks.consumer:RecordingConsumer",
)


@signals.worker_init.connect
def _check_settings(**_: Any) -> None:
    """Refuse to start on a bad setting, with the setting named (no traceback)."""
    try:
        settings.check()
    except ConfigurationError as error:
        print(f"webhooks worker: configuration error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


audit.configure()

# Seconds between two sweeps of the monitoring queues left by crashed processes.
SWEEP_INTERVAL = 3600


def sweep_monitoring_queues() -> list[str]:
    """Delete monitoring queues whose lease ran out, and their SNS subscriptions (tasks.transport.sweep)."""
    with app.connection_for_write() as connection:
        return transport.sweep(connection.default_channel)


def _sweep_in_background() -> None:
    def run() -> None:
        try:
            sweep_monitoring_queues()
        except Exception:  # the next sweep tries again
            logging.getLogger(__name__).warning("sweep of the monitoring queues failed", exc_info=True)

    threading.Thread(target=run, name="monitoring-sweep", daemon=True).start()


class SweepMonitoringQueues(bootsteps.StartStopStep):  # type: ignore[misc]
    """With WORKER_EVENTS on, every SWEEP_INTERVAL: sweep, in a thread (the timer runs the event loop)."""

    requires = ("celery.worker.components:Timer",)

    def include_if(self, worker: Any) -> bool:
        return settings.WORKER_EVENTS

    def start(self, worker: Any) -> None:
        self.entry = worker.timer.call_repeatedly(SWEEP_INTERVAL, _sweep_in_background)

    def stop(self, worker: Any) -> None:
        entry = getattr(self, "entry", None)
        if entry is not None:
            entry.cancel()


app.steps["worker"].add(SweepMonitoringQueues)


@signals.worker_ready.connect
def _start_checkpoints(**_: Any) -> None:
    audit.start_checkpoints()
    holds.start_tending()  # the held deliveries: sent again when their subscriber takes them again


@signals.worker_shutdown.connect
def _stop_checkpoints(**_: Any) -> None:
    holds.stop_tending()
    audit.stop_checkpoints()


# Request: what monitors (inspect, Flower) see of a task is its summary (tasks/monitoring.py);
# throws: a delivery that failed for good is logged by Celery as expected, without a traceback
@app.task(
    bind=True,
    name="tasks.deliver_webhook",
    max_retries=None,
    Request="tasks.monitoring:SummaryRequest",
    throws=(DeliveryFailed,),
)
def deliver_webhook(self: Task, delivery: dict[str, Any]) -> None:
    """Deliver one lead to one subscriber (the message: tasks.message.DeliveryMessage).

    Thin on purpose: ``tasks.delivery.process`` does the work, records it, and says whether the
    message must come back later (a retry, a hop of a wait longer than SQS's delay), or that
    the delivery failed for good. Monitors see either with its reason: a failure raises
    ``DeliveryFailed`` (Flower's FAILURE; the message is acknowledged all the same), a retry
    carries ``DeliveryRetried`` ("HTTP 503; retry 2 due …"), in Flower and the worker's log.
    """
    # What SQS says of this arrival (set by tasks.transport, from which every task message comes):
    # whether it handed the message out before, its MessageId and when it accepted it.
    arrival = Arrival.of(self.request)
    try:
        again = process(delivery, arrival)
    except Exception as error:  # a bug, the database down…: the message comes back after a visibility timeout
        named = delivery.get("delivery_id") if isinstance(delivery, dict) else None
        log.exception("delivery %s failed unexpectedly; it comes back in %d s", named or self.request.id, BACKOFF)
        again = after_crash(delivery, arrival, error)
    if again is None:
        return
    if isinstance(again, Failed):  # recorded already: Flower counts a failure, the message is acknowledged
        raise DeliveryFailed(again.reason)
    try:
        retried: Retry = self.retry(
            args=(),
            kwargs={"delivery": again.message},
            countdown=0,
            DelaySeconds=again.delay,
            kwargsrepr=summary(again.message),  # Flower shows this, not the lead's personal data
            exc=DeliveryRetried(again.reason),  # the retry's reason in Flower
            throw=False,
        )
    except Exception as error:  # SQS unreachable: keep the message, SQS gives it back
        log.exception("delivery %s could not be published again", self.request.id)
        raise Reject(str(error), requeue=True) from error
    retried.message = again.reason  # the worker's log says "retry: HTTP 503; retry 2 due …", not "Retry in 0s"
    raise retried


@app.task(bind=True, name="tasks.notify_operators", max_retries=None)
def notify_operators(self: Task, event: dict[str, Any]) -> None:
    """POST one operational webhook (tasks.operations); tried OPERATIONS_ATTEMPTS times, SQS
    holding it between tries; a last failure is logged, never turned into another event."""
    try:
        secretbox.check_authentic(event)
    except WebhookError as error:  # not built by a worker: never signed nor sent
        operations.log.error("operational event refused, not sent: %s", error)
        return
    response = operations.send(event)
    if response.ok:
        return
    tries = int(self.request.retries) + 1
    if tries >= operations.OPERATIONS_ATTEMPTS:
        operations.log.error(
            "operational webhook %s %s not delivered after %d tries: %s",
            event.get("type"),
            event.get("id"),
            tries,
            response.error,
        )
        return
    operations.log.warning("operational webhook %s failed (%s): tried again", event.get("type"), response.error)
    raise self.retry(countdown=0, DelaySeconds=min(operations.OPERATIONS_WAIT, settings.SQS_MAX_DELAY))


@signals.task_revoked.connect
def _record_revoke(
    sender: Any = None, request: Any = None, terminated: bool = False, expired: bool = False, **_: Any
) -> None:
    """A revoke (Flower, ``celery control revoke``) ends the delivery like ``webhooks cancel``:
    recorded, and known to every worker from then on (a revoke alone lives only in the memory
    of the workers that were up to receive it)."""
    # ``sender`` is the task; ``request`` its Context (the message was acknowledged just before)
    if request is None or getattr(sender, "name", None) != deliver_webhook.name:
        return
    message = (getattr(request, "kwargs", None) or {}).get("delivery")
    try:
        revoked(message, Arrival(broker_id=str(request.id)), "expired" if expired else "revoked")
    except Exception:
        log.exception("the revoke of task %s could not be recorded", request.id)
