"""Deliveries held by an open circuit wait in the platform database, as a disabled subscriber's
do: the parked delivery a worker sends again for its circuit's probe is named on the
subscriber's row while its message is on its way; a parked delivery keeps the queue it came
from (the workers serving that queue send it again there), and one index on (that queue, the
subscriber, when it was parked) answers the workers' look at them (every few seconds,
tasks.holds) from the parked entries alone, however many rows the table has.

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


PARKED = "ix_deliveries_held_queue_subscriber_id_held_at"


def upgrade() -> None:
    with op.batch_alter_table("webhook_configs") as table:
        table.add_column(sa.Column("circuit_probe_delivery", sa.String(64), nullable=True))
    with op.batch_alter_table("deliveries") as table:
        table.add_column(sa.Column("held_queue", sa.String(80), nullable=True))
    op.create_index(PARKED, "deliveries", ["held_queue", "subscriber_id", "held_at"])


def downgrade() -> None:
    op.drop_index(PARKED, "deliveries")
    with op.batch_alter_table("deliveries") as table:
        table.drop_column("held_queue")
    with op.batch_alter_table("webhook_configs") as table:
        table.drop_column("circuit_probe_delivery")
