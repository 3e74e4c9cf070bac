"""Redeliveries, the address each attempt reached, and secret rotation with a grace period.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from records.models import Moment

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_attempts") as table:
        table.add_column(sa.Column("redelivery_of", sa.String(64), nullable=True))
        table.add_column(sa.Column("address", sa.String(64), nullable=True))
        table.create_index("ix_delivery_attempts_redelivery_of", ["redelivery_of"])
    with op.batch_alter_table("webhook_configs") as table:
        table.add_column(sa.Column("previous_sealed_secret", sa.Text, nullable=True))
        table.add_column(sa.Column("previous_secret_until", Moment, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_configs") as table:
        table.drop_column("previous_secret_until")
        table.drop_column("previous_sealed_secret")
    with op.batch_alter_table("delivery_attempts") as table:
        table.drop_index("ix_delivery_attempts_redelivery_of")
        table.drop_column("address")
        table.drop_column("redelivery_of")
