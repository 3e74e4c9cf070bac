"""A tamper-evident audit trail: hash chains on delivery_attempts, and audit_checkpoints.

Rows written before this revision are chained here, in id order, into chains of at most
LEGACY_CHAIN_LENGTH records named ``legacy:1``, ``legacy:2``… (short chains keep an evidence
export's chain segment short), all sealed by the genesis checkpoint (seq 1): from this
upgrade on, any change to them is detected; what happened to them before it cannot be.

duration_ms becomes DOUBLE: MySQL's single-precision FLOAT does not read back the value
that was hashed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from records import canonical
from records.models import Double, LongText, Moment
from webhooks.clock import utcnow

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LEGACY_CHAIN_LENGTH = 1000
BATCH = 500

_attempts = sa.table(
    "delivery_attempts",
    sa.column("id", sa.Integer),
    *(
        sa.column(name, kind)
        for name, kind in (
            ("delivery_id", sa.String),
            ("lead_id", sa.String),
            ("webhook", sa.String),
            ("url", sa.String),
            ("retry", sa.Integer),
            ("status", sa.String),
            ("http_status", sa.Integer),
            ("error", sa.Text),
            ("request_headers", sa.JSON),
            ("request_body", LongText),
            ("response_body", LongText),
            ("duration_ms", Double),
            ("attempted_at", Moment),
            ("next_retry_at", Moment),
        )
    ),
    sa.column("chain", sa.String),
    sa.column("seq", sa.Integer),
    sa.column("prev_id", sa.Integer),
    sa.column("prev_hash", sa.String),
    sa.column("content_hash", sa.String),
    sa.column("record_hash", sa.String),
)

_NEW_COLUMNS = (
    ("chain", sa.String(64)),
    ("seq", sa.Integer()),
    ("prev_id", sa.Integer()),
    ("prev_hash", sa.String(64)),
    ("content_hash", sa.String(64)),
    ("record_hash", sa.String(64)),
)


def upgrade() -> None:
    checkpoints = op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", Moment, nullable=False, index=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("heads", sa.JSON, nullable=False),
        sa.Column("floors", sa.JSON, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False),
    )
    with op.batch_alter_table("delivery_attempts") as batch:
        batch.alter_column("duration_ms", existing_type=sa.Float(), type_=Double, existing_nullable=False)
        for name, kind in _NEW_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))

    heads = _chain_existing_rows(op.get_bind())

    with op.batch_alter_table("delivery_attempts") as batch:
        for name, kind in _NEW_COLUMNS:
            if name != "prev_id":
                batch.alter_column(name, existing_type=kind, nullable=False)
        batch.create_unique_constraint("uq_delivery_attempts_chain_seq", ["chain", "seq"])

    created_at = utcnow()
    detail = {"legacy_records": sum(head["seq"] for head in heads.values()), "legacy_chains": len(heads)}
    digest = canonical.checkpoint_hash(1, "genesis", created_at, canonical.ZERO_HASH, heads, {}, detail)
    op.bulk_insert(
        checkpoints,
        [
            {
                "seq": 1,
                "kind": "genesis",
                "created_at": created_at,
                "prev_hash": canonical.ZERO_HASH,
                "heads": heads,
                "floors": {},
                "detail": detail,
                "record_hash": digest,
            }
        ],
    )


def _chain_existing_rows(connection: sa.Connection) -> dict[str, dict[str, Any]]:
    """Chain every existing row, in id order; the head of each legacy chain."""
    heads: dict[str, dict[str, Any]] = {}
    last_id = 0
    chain, seq, prev_id, prev_hash = "", LEGACY_CHAIN_LENGTH, None, canonical.ZERO_HASH
    while True:
        rows = connection.execute(
            sa.select(_attempts).where(_attempts.c.id > last_id).order_by(_attempts.c.id).limit(BATCH)
        ).mappings()
        updates = []
        for row in rows:
            if seq >= LEGACY_CHAIN_LENGTH:
                chain, seq, prev_id, prev_hash = f"legacy:{len(heads) + 1}", 0, None, canonical.ZERO_HASH
            seq += 1
            content_digest = canonical.content_hash(row)
            digest = canonical.record_hash(chain, seq, prev_id, prev_hash, content_digest)
            updates.append(
                {
                    "row_id": row["id"],
                    "chain": chain,
                    "seq": seq,
                    "prev_id": prev_id,
                    "prev_hash": prev_hash,
                    "content_hash": content_digest,
                    "record_hash": digest,
                }
            )
            prev_id, prev_hash, last_id = row["id"], digest, row["id"]
            heads[chain] = {"id": prev_id, "seq": seq, "hash": prev_hash}
        if not updates:
            return heads
        connection.execute(
            _attempts.update()
            .where(_attempts.c.id == sa.bindparam("row_id"))
            .values({name: sa.bindparam(name) for name, _ in _NEW_COLUMNS}),
            updates,
        )


def downgrade() -> None:
    with op.batch_alter_table("delivery_attempts") as batch:
        batch.drop_constraint("uq_delivery_attempts_chain_seq", type_="unique")
        for name, _ in reversed(_NEW_COLUMNS):
            batch.drop_column(name)
        batch.alter_column("duration_ms", existing_type=Double, type_=sa.Float(), existing_nullable=False)
    op.drop_table("audit_checkpoints")
