"""Checkpoints: a seal over the heads of the chains written since the previous ones (see records.trail).

A checkpoint seals only heads whose MAC authenticates under a configured trail key, and is
written only after the checkpoint it follows authenticates: a record or a checkpoint added
by someone with write access to the database alone is never sealed, nor chained onto.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from records import canonical, database
from records.models import AuditCheckpoint
from records.trail import keys
from records.trail.base import CHECKPOINT, CHECKPOINT_TRIES, GRACE, attempts
from webhooks.clock import utcnow
from webhooks.errors import AuditError

log = logging.getLogger("webhooks.audit")
# Chains named in the warning about heads left unsealed (the count says how many in all).
REFUSED_NAMED = 5


def _window(latest: AuditCheckpoint, before: AuditCheckpoint | None) -> tuple[ColumnElement[bool], dict[str, Any]]:
    """Which records make their chain's head due for sealing, and how the checkpoint's detail says so.

    By id: the records newer than the highest id the checkpoint before ``latest`` saw (two
    intervals: a record still being committed while one checkpoint read the heads is sealed by
    the next). By date only after checkpoints that noted no id (written before schema 0004).
    """
    for checkpoint in (before, latest):
        floor = checkpoint.detail.get("max_id") if checkpoint is not None else None
        if isinstance(floor, int):
            return attempts.c.id > floor, {"window_from_id": floor}
    since = latest.created_at - GRACE
    return attempts.c.attempted_at >= since, {"window_from": canonical.moment(since)}


def sealable_heads(
    session: Session, latest: AuditCheckpoint, before: AuditCheckpoint | None, trail_keys: Mapping[str, bytes]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The heads due for sealing whose MAC authenticates, and the checkpoint's detail (window, highest id).

    A head that does not authenticate is left out, unless ``latest`` sealed it already."""
    condition, detail = _window(latest, before)
    active = select(attempts.c.chain).where(condition).distinct()
    tops = (
        select(attempts.c.chain, func.max(attempts.c.seq).label("seq"))
        .where(attempts.c.chain.in_(active))
        .group_by(attempts.c.chain)
        .subquery()
    )
    rows = session.execute(
        select(
            attempts.c.chain, attempts.c.seq, attempts.c.id, attempts.c.record_hash, attempts.c.key_id, attempts.c.mac
        ).join(tops, and_(attempts.c.chain == tops.c.chain, attempts.c.seq == tops.c.seq))
    )
    heads: dict[str, dict[str, Any]] = {}
    refused: list[str] = []
    for row in rows:
        head = {"id": row.id, "seq": row.seq, "hash": row.record_hash}
        if (
            keys.record_authentic(trail_keys, row.key_id, row.mac, row.record_hash)
            or latest.heads.get(row.chain) == head
        ):
            heads[row.chain] = head
        else:
            refused.append(f"{row.chain} seq {row.seq} (record {row.id})")
    detail["max_id"] = session.scalar(select(func.max(attempts.c.id))) or 0  # the same snapshot as the heads
    if refused:
        detail["refused_heads"] = len(refused)
        more = f" and {len(refused) - REFUSED_NAMED} more" if len(refused) > REFUSED_NAMED else ""
        log.warning(
            "audit checkpoint: %d chain head(s) left unsealed, their MAC does not authenticate "
            "(written without the trail key? run `webhooks audit verify`): %s%s",
            len(refused),
            ", ".join(refused[:REFUSED_NAMED]),
            more,
        )
    return heads, detail


def latest_two(session: Session) -> tuple[AuditCheckpoint, AuditCheckpoint | None]:
    """The latest checkpoint and the one before it (None after a prune left only one)."""
    found = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc()).limit(2)))
    if not found:
        raise AuditError("the audit trail has no checkpoint, not even its genesis: run `webhooks db upgrade`")
    return found[0], found[1] if len(found) > 1 else None


def check_authentic(checkpoint: AuditCheckpoint, trail_keys: Mapping[str, bytes]) -> None:
    """AuditError unless ``checkpoint`` (the one a new checkpoint follows) is intact and authenticates."""
    digest = checkpoint_digest(checkpoint)
    if digest == checkpoint.record_hash and keys.checkpoint_authentic(
        trail_keys, checkpoint.key_id, checkpoint.mac, digest
    ):
        return
    known = "" if checkpoint.key_id in trail_keys else f" (trail key {checkpoint.key_id}: not configured)"
    raise AuditError(
        f"checkpoint #{checkpoint.seq} does not authenticate under the configured trail keys{known}: "
        "no checkpoint is chained onto it; `webhooks audit verify` lists the problems"
    )


def checkpoint_digest(checkpoint: AuditCheckpoint) -> str:
    """The hash ``checkpoint`` should have, recomputed from its content."""
    return canonical.checkpoint_hash(
        checkpoint.seq,
        checkpoint.kind,
        checkpoint.created_at,
        checkpoint.prev_hash,
        checkpoint.heads,
        checkpoint.floors,
        checkpoint.detail,
    )


def seal(
    session: Session,
    after: AuditCheckpoint,
    kind: str,
    now: datetime,
    heads: Mapping[str, Any],
    floors: Mapping[str, Any],
    detail: Mapping[str, Any],
    key: keys.TrailKey,
) -> AuditCheckpoint:
    seq = after.seq + 1
    digest = canonical.checkpoint_hash(seq, kind, now, after.record_hash, heads, floors, detail)
    checkpoint = AuditCheckpoint(
        seq=seq,
        kind=kind,
        created_at=now,
        prev_hash=after.record_hash,
        heads=dict(heads),
        floors=dict(floors),
        detail=dict(detail),
        record_hash=digest,
        key_id=key.id,
        mac=canonical.checkpoint_mac(key.key, digest),
    )
    session.add(checkpoint)
    session.flush()
    return checkpoint


def write_checkpoint(
    url: str,
    now: datetime | None = None,
    *,
    min_age: float = 0,
    only_if_changed: bool = False,
    encryption_keys: Sequence[bytes] | None = None,
) -> AuditCheckpoint | None:
    """Seal the heads of the chains written since the checkpoint before the latest (records.trail),
    under the current trail key.

    Returns None without writing when the latest checkpoint is younger than ``min_age``
    seconds, or, with ``only_if_changed``, when it already seals every one of those heads.
    AuditError when the latest checkpoint does not authenticate.
    """
    trail_keys = keys.by_id(encryption_keys)
    key = keys.current(encryption_keys)
    for attempt in itertools.count(1):
        moment = now or utcnow()
        try:
            with database.session(url) as session:
                latest, before = latest_two(session)
                if min_age and latest.created_at > moment - timedelta(seconds=min_age):
                    return None
                check_authentic(latest, trail_keys)
                heads, detail = sealable_heads(session, latest, before, trail_keys)
                if only_if_changed and all(latest.heads.get(chain) == head for chain, head in heads.items()):
                    return None
                return seal(session, latest, CHECKPOINT, moment, heads, {}, detail, key)
        except IntegrityError:
            if attempt >= CHECKPOINT_TRIES:
                raise
    raise AssertionError("unreachable")
