"""Writing: one chain per thread, one INSERT per record (see records.trail)."""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from records import canonical, database
from records.trail import keys
from records.trail.base import CHAIN_MAX_IDLE, attempts
from webhooks.clock import utcnow
from webhooks.errors import AuditError

_insert_attempt = attempts.insert()


@dataclass
class _Head:
    chain: str
    seq: int = 0
    id: int | None = None
    hash: str = canonical.ZERO_HASH
    written_at: datetime = field(default_factory=utcnow)


_local = threading.local()


def _heads() -> dict[str, _Head]:
    """This thread's chain heads, one per database URL (a forked child starts afresh)."""
    if getattr(_local, "pid", None) != os.getpid():
        _local.pid = os.getpid()
        _local.heads = {}
    heads: dict[str, _Head] = _local.heads
    return heads


def new_chain_id() -> str:
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(6)}"


def append(url: str, fields: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Write one attempt (the columns of records.canonical.CONTENT_FIELDS) at the end of this
    thread's chain, MACed under the current trail key: one INSERT in its own transaction.
    Database errors propagate.

    Returns the record's columns as written, its ``id`` included."""
    key = keys.current()
    heads = _heads()
    moment = now or utcnow()
    head = heads.get(url)
    if head is None or moment - head.written_at > CHAIN_MAX_IDLE:
        head = heads[url] = _Head(new_chain_id())
    values = dict(fields)
    values["duration_ms"] = round(float(values["duration_ms"]), 3)  # what is stored is what is hashed
    content_digest = canonical.content_hash(values)
    seq = head.seq + 1
    digest = canonical.record_hash(head.chain, seq, head.id, head.hash, content_digest)
    values.update(
        chain=head.chain,
        seq=seq,
        prev_id=head.id,
        prev_hash=head.hash,
        content_hash=content_digest,
        record_hash=digest,
        key_id=key.id,
        mac=canonical.record_mac(key.key, digest),
    )
    try:
        # Not the ORM's unit of work, nor SQLAlchemy's execution machinery with PyMySQL: the same
        # one INSERT, for a fraction of the CPU; in autocommit mode: one round trip, no COMMIT
        # nor ROLLBACK after it (records.database.insert)
        row_id = database.insert(url, _insert_attempt, values)
        if not row_id:
            raise AuditError("the database returned no id for the audit record")
    except BaseException:
        # The INSERT may or may not have been committed: continuing this chain could fork it
        # or leave a gap. The next record starts a new chain.
        heads.pop(url, None)
        raise
    head.seq, head.id, head.hash, head.written_at = seq, row_id, digest, moment
    values["id"] = head.id
    return values
