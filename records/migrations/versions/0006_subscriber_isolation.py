"""Subscribers protected from each other: circuit breaker state, subscriber events, and an
index for per-subscriber questions to the audit (circuit outcomes, auto-disable, health).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from records.models import Moment

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_configs") as table:
        table.add_column(sa.Column("circuit_open_until", Moment, nullable=True))
        table.add_column(sa.Column("circuit_cooldown", sa.Integer, nullable=True))
        table.add_column(sa.Column("circuit_closed_at", Moment, nullable=True))
        table.add_column(sa.Column("circuit_probe_until", Moment, nullable=True))
    op.create_table(
        "subscriber_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subscriber_id", sa.Integer, nullable=False, index=True),
        sa.Column("webhook", sa.String(100), nullable=False, index=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("at", Moment, nullable=False, index=True),
    )
    op.create_index("ix_delivery_attempts_webhook_attempted_at", "delivery_attempts", ["webhook", "attempted_at"])


def downgrade() -> None:
    op.drop_index("ix_delivery_attempts_webhook_attempted_at", "delivery_attempts")
    op.drop_table("subscriber_events")
    with op.batch_alter_table("webhook_configs") as table:
        table.drop_column("circuit_probe_until")
        table.drop_column("circuit_closed_at")
        table.drop_column("circuit_cooldown")
        table.drop_column("circuit_open_until")
