"""Deliveries held by an open circuit wait in the platform database, as a disabled subscriber's
do: the delivery a worker sends again as its circuit's probe is named on the subscriber's row
(so the message that comes back claims the probe, and no other).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_configs") as table:
        table.add_column(sa.Column("circuit_probe_delivery", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_configs") as table:
        table.drop_column("circuit_probe_delivery")
