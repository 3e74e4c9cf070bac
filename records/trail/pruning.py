"""Pruning: the oldest records deleted, the chains carried forward by a prune checkpoint (see records.trail)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, select
from sqlalchemy.exc import IntegrityError

from records import canonical, database
from records.models import AuditCheckpoint
from records.trail import keys
from records.trail.base import CHECKPOINT_TRIES, PRUNE, attempts, prune_floors
from records.trail.checkpoints import check_authentic, seal, sealable_heads
from records.trail.verification import verify
from webhooks.clock import utcnow
from webhooks.errors import AuditError, TrailBroken


@dataclass(frozen=True)
class Pruned:
    before: datetime
    records: int
    checkpoints: int
    checkpoint: AuditCheckpoint


def prune(
    url: str, before: datetime, now: datetime | None = None, *, encryption_keys: Sequence[bytes] | None = None
) -> Pruned:
    """Delete the records dated before ``before`` (each chain's oldest, up to its first newer
    record) and the checkpoints older than it; a prune checkpoint carries the trail forward.

    Refused when the trail does not verify: pruning would delete the evidence of it.
    """
    report = verify(url, encryption_keys=encryption_keys)
    if not report.ok:
        raise TrailBroken(
            f"prune refused: {report.headline()}; "
            "`webhooks audit verify` lists every problem, pruning would delete their evidence"
        )
    for attempt in itertools.count(1):
        try:
            return _prune(url, before, now or utcnow(), encryption_keys)
        except IntegrityError:  # a worker wrote a checkpoint at the same time: read again
            if attempt >= CHECKPOINT_TRIES:
                raise
    raise AssertionError("unreachable")


def _prune(url: str, before: datetime, moment: datetime, encryption_keys: Sequence[bytes] | None) -> Pruned:
    trail_keys = keys.by_id(encryption_keys)
    key = keys.current(encryption_keys)
    with database.session(url) as session:
        checkpoints = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)))
        if not checkpoints:
            raise AuditError("the audit trail has no checkpoint, not even its genesis: run `webhooks db upgrade`")
        latest = checkpoints[-1]
        check_authentic(latest, trail_keys)
        floors, checkpoint_floor = prune_floors(checkpoints)
        carried = set(floors)

        spans = session.execute(
            select(
                attempts.c.chain,
                func.max(attempts.c.seq).label("head"),
                func.min(case((attempts.c.attempted_at >= before, attempts.c.seq))).label("keep_from"),
            ).group_by(attempts.c.chain)
        ).all()
        cuts: dict[str, tuple[int, int]] = {}  # chain -> (seq after the old floor, last seq deleted)
        remaining: set[str] = set()
        for span in spans:
            last_deleted = span.keep_from - 1 if span.keep_from is not None else span.head
            if span.keep_from is not None:
                remaining.add(span.chain)
            old_floor = floors[span.chain]["seq"] if span.chain in floors else 0
            if last_deleted > old_floor:
                cuts[span.chain] = (old_floor + 1, last_deleted)
        for chain, (_, last_deleted) in cuts.items():
            found = session.execute(
                select(attempts.c.id, attempts.c.record_hash).where(
                    attempts.c.chain == chain, attempts.c.seq == last_deleted
                )
            ).one()
            floors[chain] = {"id": found.id, "seq": last_deleted, "hash": found.record_hash}

        old = list(itertools.takewhile(lambda checkpoint: checkpoint.created_at < before, checkpoints))
        if old:
            checkpoint_floor = {"seq": old[-1].seq, "hash": old[-1].record_hash}
        kept = checkpoints[len(old) :]
        heads, window = sealable_heads(session, latest, checkpoints[-2] if len(checkpoints) > 1 else None, trail_keys)
        # A floor is forgotten once its chain is wholly gone, was untouched by this prune, and
        # no kept checkpoint names it: its writer has been idle for longer than CHAIN_MAX_IDLE.
        named = set(heads).union(*(checkpoint.heads for checkpoint in kept))
        for chain in carried - remaining - set(cuts) - named:
            del floors[chain]

        records = 0
        for chain, (first, last_deleted) in cuts.items():
            result = session.execute(
                delete(attempts).where(
                    attempts.c.chain == chain, attempts.c.seq >= first, attempts.c.seq <= last_deleted
                )
            )
            records += result.rowcount  # type: ignore[attr-defined]
        detail: dict[str, Any] = {
            "before": canonical.moment(before),
            "records_deleted": records,
            "checkpoints_deleted": len(old),
        }
        if checkpoint_floor:
            detail["checkpoint_floor"] = checkpoint_floor
        checkpoint = seal(session, latest, PRUNE, moment, heads, floors, {**window, **detail}, key)
        if old:
            session.execute(delete(AuditCheckpoint).where(AuditCheckpoint.seq <= old[-1].seq))
        return Pruned(before, records, len(old), checkpoint)
