"""What every part of the audit trail shares: its constants, its clock, its table, the prune floors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table

from records.models import AuditCheckpoint, DeliveryAttempt

# A record committed after a checkpoint read the heads is dated at most one request
# earlier; a record dated more than GRACE before a checkpoint that does not seal it was
# inserted afterwards. Worker clocks must agree within GRACE (NTP).
GRACE = timedelta(hours=1)
# A writer idle for longer starts a new chain. Pruning keeps at least a day (retention
# days >= 1), so a chain whose every record was pruned is never written again.
CHAIN_MAX_IDLE = timedelta(hours=12)
# How many times a checkpoint is tried again when another writer took its seq.
CHECKPOINT_TRIES = 5

GENESIS, CHECKPOINT, PRUNE = "genesis", "checkpoint", "prune"
attempts = cast(Table, DeliveryAttempt.__table__)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def prune_floors(checkpoints: Sequence[AuditCheckpoint]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The floors of the latest prune checkpoint: where each pruned chain, and the checkpoints, resume."""
    for checkpoint in reversed(checkpoints):
        if checkpoint.kind == PRUNE:
            return dict(checkpoint.floors), checkpoint.detail.get("checkpoint_floor")
    return {}, None
