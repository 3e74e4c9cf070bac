"""Checkpoints: a seal over the heads of the chains written since the previous one (see records.trail)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from records import canonical, database
from records.models import AuditCheckpoint
from records.trail.base import CHECKPOINT, CHECKPOINT_TRIES, GRACE, attempts, utcnow
from webhooks.errors import AuditError


def active_heads(session: Session, since: datetime) -> dict[str, dict[str, Any]]:
    """The head of every chain with a record dated ``since`` or later."""
    active = select(attempts.c.chain).where(attempts.c.attempted_at >= since).distinct()
    tops = (
        select(attempts.c.chain, func.max(attempts.c.seq).label("seq"))
        .where(attempts.c.chain.in_(active))
        .group_by(attempts.c.chain)
        .subquery()
    )
    rows = session.execute(
        select(attempts.c.chain, attempts.c.seq, attempts.c.id, attempts.c.record_hash).join(
            tops, and_(attempts.c.chain == tops.c.chain, attempts.c.seq == tops.c.seq)
        )
    )
    return {row.chain: {"id": row.id, "seq": row.seq, "hash": row.record_hash} for row in rows}


def _latest(session: Session) -> AuditCheckpoint:
    latest = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc()).limit(1)).first()
    if latest is None:
        raise AuditError("the audit trail has no checkpoint, not even its genesis: run `webhooks db upgrade`")
    return latest


def seal(
    session: Session,
    after: AuditCheckpoint,
    kind: str,
    now: datetime,
    heads: Mapping[str, Any],
    floors: Mapping[str, Any],
    detail: Mapping[str, Any],
) -> AuditCheckpoint:
    seq = after.seq + 1
    checkpoint = AuditCheckpoint(
        seq=seq,
        kind=kind,
        created_at=now,
        prev_hash=after.record_hash,
        heads=dict(heads),
        floors=dict(floors),
        detail=dict(detail),
        record_hash=canonical.checkpoint_hash(seq, kind, now, after.record_hash, heads, floors, detail),
    )
    session.add(checkpoint)
    session.flush()
    return checkpoint


def write_checkpoint(
    url: str, now: datetime | None = None, *, min_age: float = 0, only_if_changed: bool = False
) -> AuditCheckpoint | None:
    """Seal the heads of the chains written since the latest checkpoint (less GRACE).

    Returns None without writing when the latest checkpoint is younger than ``min_age``
    seconds, or, with ``only_if_changed``, when it already seals every one of those heads.
    """
    for attempt in itertools.count(1):
        moment = now or utcnow()
        try:
            with database.session(url) as session:
                latest = _latest(session)
                if min_age and latest.created_at > moment - timedelta(seconds=min_age):
                    return None
                window = latest.created_at - GRACE
                heads = active_heads(session, window)
                if only_if_changed and all(latest.heads.get(chain) == head for chain, head in heads.items()):
                    return None
                return seal(session, latest, CHECKPOINT, moment, heads, {}, {"window_from": canonical.moment(window)})
        except IntegrityError:
            if attempt >= CHECKPOINT_TRIES:
                raise
    raise AssertionError("unreachable")
