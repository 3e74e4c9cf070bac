"""The audit trail authenticated: a MAC (and the id of its trail key) on every record and checkpoint.

Until now anyone with write access to the audit tables could compute the public SHA-256
hashes of a record or a checkpoint. From this revision on each carries
HMAC-SHA256(trail key, its hash), the trail key being derived from the first key of
WEBHOOK_ENCRYPTION_KEY (records.canonical.trail_key), which the database never holds.

The existing records and checkpoints are MACed here, in place, as they stand (their
hashes, chains and checkpoints do not change): this upgrade vouches for the trail as it
is; what happened to it before cannot be told. The upgrade therefore needs
WEBHOOK_ENCRYPTION_KEY, and is refused without it before anything is changed. Stop the
workers for it: a worker of an older version writes records without a MAC, which
``webhooks audit verify`` reports as forged.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import settings
from records import canonical
from webhooks.errors import ConfigurationError

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BATCH = 1000
_TABLES = ("delivery_attempts", "audit_checkpoints")


def upgrade() -> None:
    if not settings.ENCRYPTION_KEYS:
        raise ConfigurationError(
            "WEBHOOK_ENCRYPTION_KEY must be set to upgrade the schema to 0005: the upgrade MACs the audit "
            "trail's records and checkpoints under a key derived from it (0005 was not applied); it must be "
            f"the workers' key: {settings.key_hint()}, and give it to every worker and producer"
        )
    key = canonical.trail_key(settings.ENCRYPTION_KEYS[0])
    key_id = canonical.key_id(key)
    for name in _TABLES:
        with op.batch_alter_table(name) as batch:
            batch.add_column(sa.Column("key_id", sa.String(16), nullable=True))
            batch.add_column(sa.Column("mac", sa.String(64), nullable=True))

    connection = op.get_bind()
    for name, mac in (("delivery_attempts", canonical.record_mac), ("audit_checkpoints", canonical.checkpoint_mac)):
        table = sa.table(name, sa.column("id", sa.Integer), sa.column("record_hash", sa.String), *_new_columns())
        last_id = 0
        while True:
            rows = connection.execute(
                sa.select(table.c.id, table.c.record_hash).where(table.c.id > last_id).order_by(table.c.id).limit(BATCH)
            ).all()
            if not rows:
                break
            connection.execute(
                table.update()
                .where(table.c.id == sa.bindparam("row_id"))
                .values(key_id=sa.bindparam("new_key_id"), mac=sa.bindparam("new_mac")),
                [{"row_id": row.id, "new_key_id": key_id, "new_mac": mac(key, row.record_hash)} for row in rows],
            )
            last_id = rows[-1].id


def _new_columns() -> tuple[sa.ColumnClause[str], ...]:
    return sa.column("key_id", sa.String), sa.column("mac", sa.String)


def downgrade() -> None:
    for name in reversed(_TABLES):
        with op.batch_alter_table(name) as batch:
            batch.drop_column("mac")
            batch.drop_column("key_id")
