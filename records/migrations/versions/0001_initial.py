"""Subscribers and the delivery audit trail.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from records.models import LongText, Moment

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_configs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("lead_types", sa.JSON, nullable=False),
        sa.Column("erp_shop_ids", sa.JSON, nullable=False),
        sa.Column("sealed_secret", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", Moment, nullable=False),
    )
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("delivery_id", sa.String(64), nullable=False, index=True),
        sa.Column("lead_id", sa.String(64), nullable=False, index=True),
        sa.Column("webhook", sa.String(100), nullable=False, index=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("retry", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("http_status", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("request_headers", sa.JSON, nullable=False),
        sa.Column("request_body", LongText, nullable=False),
        sa.Column("response_body", LongText, nullable=True),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("attempted_at", Moment, nullable=False, index=True),
        sa.Column("next_retry_at", Moment, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("delivery_attempts")
    op.drop_table("webhook_configs")
