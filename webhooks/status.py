"""What an audit record says happened to a delivery: one value per record (``delivery_attempts.status``)."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    SUCCESS = "success"  # the subscriber answered 2xx: the delivery is done
    ERROR = "error"  # the attempt failed; ``next_retry_at`` says when the next one is due
    ABANDONED = "abandoned"  # no attempt left (the schedule ran out, a permanent error, a broken message)
    HELD = "held"  # not sent, kept for later: its subscriber is disabled (``webhooks enable`` sends it)
    CANCELLED = "cancelled"  # ended before success by an operator (webhooks cancel, a revoke) or a deleted subscriber
    SUPERSEDED = "superseded"  # ended because a redelivery of the same lead took its place (redelivery_of links them)
    # a queue message that failed authentication: recorded under the broker's id, never as a delivery's fact
    REFUSED = "refused"

    @property
    def final(self) -> bool:
        """True when no attempt of the delivery follows this record (unless an operator redelivers it)."""
        return self in FINAL


FINAL = frozenset({Status.SUCCESS, Status.ABANDONED, Status.CANCELLED, Status.SUPERSEDED, Status.REFUSED})
