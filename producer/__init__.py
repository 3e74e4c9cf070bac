"""Platform side: subscribers, lead intake, dispatch, and the ``webhooks`` CLI.

``producer.dispatch(lead)`` enqueues a lead for every matching subscriber and returns
the delivery ids.
"""

from producer.dispatch import dispatch

__all__ = ["dispatch"]
