"""Subscribers' lifecycle: why one is disabled, and one row per delivery (dispatch, end, hold).

The deliveries already recorded in the audit get their row (lead, subscriber name, first
attempt as dispatch time), so dispatching one of their leads again is still recognised.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from records.models import Moment

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_configs") as table:
        table.add_column(sa.Column("disabled_reason", sa.String(500), nullable=True))
        table.add_column(sa.Column("disabled_at", Moment, nullable=True))
    op.create_table(
        "deliveries",
        sa.Column("delivery_id", sa.String(64), primary_key=True),
        sa.Column("webhook_id", sa.String(64), nullable=False),
        sa.Column("lead_id", sa.String(64), nullable=False, index=True),
        sa.Column("subscriber_id", sa.Integer, nullable=True, index=True),
        sa.Column("webhook", sa.String(100), nullable=False, index=True),
        sa.Column("redelivery_of", sa.String(64), nullable=True, index=True),
        sa.Column("dispatched_at", Moment, nullable=False, index=True),
        sa.Column("ended_at", Moment, nullable=True, index=True),
        sa.Column("ended_status", sa.String(16), nullable=True),
        sa.Column("ended_reason", sa.Text, nullable=True),
        sa.Column("held_message", sa.JSON, nullable=True),
        sa.Column("held_at", Moment, nullable=True, index=True),
        sa.Column("held_reason", sa.Text, nullable=True),
    )
    op.execute(
        "INSERT INTO deliveries (delivery_id, webhook_id, lead_id, webhook, redelivery_of, dispatched_at) "
        "SELECT delivery_id, delivery_id, MIN(lead_id), MIN(webhook), MIN(redelivery_of), MIN(attempted_at) "
        "FROM delivery_attempts GROUP BY delivery_id"
    )


def downgrade() -> None:
    op.drop_table("deliveries")
    with op.batch_alter_table("webhook_configs") as table:
        table.drop_column("disabled_at")
        table.drop_column("disabled_reason")
