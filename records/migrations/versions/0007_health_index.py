"""Indexes for `webhooks health`: a subscriber's attempts by outcome and time, with their
durations, read from the index alone (its last success at once, whatever its failures since;
its last day's outcomes and durations without reading the records themselves); a subscriber's
deliveries not ended, by dispatch time, and each delivery's outcomes (its pending ones: those
without a final record, found from the indexes alone).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ATTEMPTS = "ix_delivery_attempts_webhook_status_attempted_at"
DELIVERIES = "ix_deliveries_subscriber_id_ended_at_dispatched_at"
OUTCOMES = "ix_delivery_attempts_delivery_id_status"


def upgrade() -> None:
    op.create_index(ATTEMPTS, "delivery_attempts", ["webhook", "status", "attempted_at", "duration_ms"])
    op.create_index(DELIVERIES, "deliveries", ["subscriber_id", "ended_at", "dispatched_at"])
    op.create_index(OUTCOMES, "delivery_attempts", ["delivery_id", "status"])


def downgrade() -> None:
    op.drop_index(OUTCOMES, "delivery_attempts")
    op.drop_index(DELIVERIES, "deliveries")
    op.drop_index(ATTEMPTS, "delivery_attempts")
