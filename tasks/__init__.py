"""Worker side: the Celery app and the ``deliver_webhook`` task.

Run a worker with ``celery -A tasks worker``; enqueue from Python with
``tasks.deliver_webhook.delay(message)`` (the message is described in tasks.message).
"""

from tasks.application import app, deliver_webhook

__all__ = ["app", "deliver_webhook"]
