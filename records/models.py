"""Tables. The schema itself is versioned by Alembic (records/migrations)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Request bodies can reach SQS's 1 MiB: MySQL's TEXT stops at 64 KiB.
LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
# Naive UTC with microseconds (MySQL's DATETIME keeps whole seconds by default).
Moment = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# MySQL's FLOAT is single precision and reads back with 6 digits: a hashed value needs DOUBLE.
Double = Float().with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")
Hash = String(64)  # lowercase hex SHA-256
KeyId = String(16)  # a trail key's id (records.canonical.key_id), never the key


class Base(DeclarativeBase):
    pass


class Subscriber(Base):
    """A partner's webhook: which leads it receives and where they go."""

    __tablename__ = "webhook_configs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    lead_types: Mapped[list[str]] = mapped_column(JSON)
    erp_shop_ids: Mapped[list[str]] = mapped_column(JSON)
    sealed_secret: Mapped[str] = mapped_column(Text)  # SecretBox ciphertext, never the clear secret
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(Moment)
    # after rotate-secret: the old secret, still signing beside the new one until then
    previous_sealed_secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    previous_secret_until: Mapped[datetime | None] = mapped_column(Moment, nullable=True)
    # why and since when it is disabled (webhooks disable, a 410 Gone, auto-disable); None while enabled
    disabled_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    disabled_at: Mapped[datetime | None] = mapped_column(Moment, nullable=True)
    # its circuit breaker (tasks.circuit): open until then (None: closed), the current cool-down in
    # seconds, when it last closed, until when a worker's probe is under way, and the parked
    # delivery sent again as that probe (by tasks.holds), if it is one
    circuit_open_until: Mapped[datetime | None] = mapped_column(Moment, nullable=True)
    circuit_cooldown: Mapped[int | None] = mapped_column(Integer, nullable=True)
    circuit_closed_at: Mapped[datetime | None] = mapped_column(Moment, nullable=True)
    circuit_probe_until: Mapped[datetime | None] = mapped_column(Moment, nullable=True)
    circuit_probe_delivery: Mapped[str | None] = mapped_column(String(64), nullable=True)

    def summary(self) -> dict[str, Any]:
        """What may be shown to a user: everything but the secret."""
        return {
            "name": self.name,
            "url": self.url,
            "lead_types": list(self.lead_types),
            "erp_shop_ids": list(self.erp_shop_ids),
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "disabled_at": _iso(self.disabled_at) if self.disabled_at else None,
            "created_at": self.created_at.isoformat() + "+00:00",
            "previous_secret_signs_until": _iso(self.previous_secret_until) if self.previous_secret_until else None,
        }


class Delivery(Base):
    """One row per delivery dispatched (platform side): what makes dispatch idempotent, and
    what an attempt cannot say by itself — that an operator ended the delivery, or that it
    is held, parked here with its message until its subscriber is enabled again or its circuit
    closes.

    Written by the producer and the CLI, and by a worker only off the happy path (holding a
    delivery, a revoke). The audit trail (``delivery_attempts``) stays the record of what
    happened; this table is where the platform keeps what it still has to do.
    """

    __tablename__ = "deliveries"

    delivery_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(64))  # the webhook-id header (the original's, for a redelivery)
    lead_id: Mapped[str] = mapped_column(String(64), index=True)
    subscriber_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    webhook: Mapped[str] = mapped_column(String(100), index=True)
    redelivery_of: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    dispatched_at: Mapped[datetime] = mapped_column(Moment, index=True)
    # ended by an operator or a redelivery: the worker drops its message (and records it) on arrival
    ended_at: Mapped[datetime | None] = mapped_column(Moment, nullable=True, index=True)
    ended_status: Mapped[str | None] = mapped_column(String(16), nullable=True)  # cancelled | superseded
    ended_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # held while its subscriber is disabled or its circuit open: the message waits here, not in
    # SQS (it costs nothing there, and takes no place in the queue the others are served from)
    held_message: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    held_at: Mapped[datetime | None] = mapped_column(Moment, nullable=True, index=True)
    held_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # the queue it was parked from: the workers serving that queue send it again there (tasks.holds)
    held_queue: Mapped[str | None] = mapped_column(String(80), nullable=True)


class SubscriberEvent(Base):
    """What happened to a subscriber, as the operators were told: disabled (410 Gone, all
    attempts failing for WEBHOOK_DISABLE_AFTER), its circuit opened or closed."""

    __tablename__ = "subscriber_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(Integer, index=True)
    webhook: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[str] = mapped_column(String(40))  # subscriber.disabled | subscriber.circuit_opened | …_closed
    detail: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(Moment, index=True)


class DeliveryAttempt(Base):
    """One row per send attempt: the proof of what was sent, when, and what came back.

    Each row is a link of a hash chain (records.canonical): one chain per writer (a worker
    thread), numbered by ``seq``; the unique (chain, seq) keeps two writers from forking one.
    Its ``mac`` shows that a holder of the trail key wrote it (records.trail).
    """

    __tablename__ = "delivery_attempts"
    __table_args__ = (UniqueConstraint("chain", "seq", name="uq_delivery_attempts_chain_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(64), index=True)
    lead_id: Mapped[str] = mapped_column(String(64), index=True)
    webhook: Mapped[str] = mapped_column(String(100), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    retry: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # success | error | abandoned
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_headers: Mapped[dict[str, str]] = mapped_column(JSON)
    request_body: Mapped[str] = mapped_column(LongText)
    response_body: Mapped[str | None] = mapped_column(LongText, nullable=True)
    duration_ms: Mapped[float] = mapped_column(Double)
    attempted_at: Mapped[datetime] = mapped_column(Moment, index=True)
    next_retry_at: Mapped[datetime | None] = mapped_column(Moment, nullable=True)
    redelivery_of: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)  # the original delivery
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the IP the request went to
    chain: Mapped[str] = mapped_column(String(64))  # the writer's chain id
    seq: Mapped[int] = mapped_column(Integer)  # 1, 2, … within the chain
    prev_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # id of the record before, in the chain
    prev_hash: Mapped[str] = mapped_column(Hash)  # its record_hash (64 zeros for seq 1)
    content_hash: Mapped[str] = mapped_column(Hash)  # SHA-256 of this record's canonical content
    record_hash: Mapped[str] = mapped_column(Hash)  # SHA-256 of (chain, seq, prev_id, prev_hash, content_hash)
    key_id: Mapped[str | None] = mapped_column(KeyId, nullable=True)  # the trail key of its MAC (schema 0004)
    mac: Mapped[str | None] = mapped_column(Hash, nullable=True)  # HMAC-SHA256 of record_hash under that key

    def summary(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "lead_id": self.lead_id,
            "webhook": self.webhook,
            "url": self.url,
            "retry": self.retry,
            "status": self.status,
            "http_status": self.http_status,
            "error": self.error,
            "attempted_at": _iso(self.attempted_at),
            "duration_ms": round(self.duration_ms, 3),
            "next_retry_at": _iso(self.next_retry_at) if self.next_retry_at else None,
            "redelivery_of": self.redelivery_of,
            "address": self.address,
        }

    def exchange(self) -> dict[str, Any]:
        """What was sent and what came back."""
        return {
            "request_headers": dict(self.request_headers),
            "request_body": self.request_body,
            "response_body": self.response_body,
        }


class AuditCheckpoint(Base):
    """A seal over the audit trail: the head of every chain that moved, chained to the previous seal.

    ``kind``: ``genesis`` (the first, written by the migration that introduced the chains),
    ``checkpoint`` (periodic) or ``prune`` (written by ``webhooks audit prune``, whose
    ``floors`` carry each chain past the records it deleted).
    """

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(Moment, index=True)
    prev_hash: Mapped[str] = mapped_column(Hash)
    heads: Mapped[dict[str, Any]] = mapped_column(JSON)  # chain -> {"id", "seq", "hash"} of its last record
    floors: Mapped[dict[str, Any]] = mapped_column(JSON)  # chain -> {"id", "seq", "hash"} of its last deleted record
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)  # record id window, counts, prune cutoff, checkpoint floor
    record_hash: Mapped[str] = mapped_column(Hash)
    key_id: Mapped[str | None] = mapped_column(KeyId, nullable=True)  # the trail key of its MAC (schema 0004)
    mac: Mapped[str | None] = mapped_column(Hash, nullable=True)  # HMAC-SHA256 of record_hash under that key


def _iso(moment: datetime) -> str:
    """Stored times are naive UTC; shown with their offset."""
    return moment.isoformat() + "+00:00"
