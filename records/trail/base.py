"""What every part of the audit trail shares: its constants, its clock, its table, the prune floors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table

from records.models import AuditCheckpoint, DeliveryAttempt

# A checkpoint seals the chains with a record newer (by id) than the highest id seen by the
# checkpoint before the previous one: a window of two checkpoint intervals, that no clock
# affects. Only after checkpoints written before the ids were noted (schema 0004) is the
# window a time: the records dated from the previous checkpoint less GRACE on.
GRACE = timedelta(hours=1)
# How far ahead of the moment `verify` runs, or of the checkpoint that sealed it, a record (or
# a checkpoint) may be dated before it is flagged as dated in the future: writers' clocks may
# be off by that much (a host an hour ahead, or behind, passes).
CLOCK_TOLERANCE = timedelta(hours=2)
# A writer idle for longer starts a new chain. Pruning keeps at least a day (retention
# days >= 1), so a chain whose every record was pruned is never written again.
CHAIN_MAX_IDLE = timedelta(hours=12)
# How many times a checkpoint is tried again when another writer took its seq.
CHECKPOINT_TRIES = 5

GENESIS, CHECKPOINT, PRUNE = "genesis", "checkpoint", "prune"
attempts = cast(Table, DeliveryAttempt.__table__)


def prune_floors(checkpoints: Sequence[AuditCheckpoint]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The floors of the latest prune checkpoint: where each pruned chain, and the checkpoints, resume."""
    for checkpoint in reversed(checkpoints):
        if checkpoint.kind == PRUNE:
            return dict(checkpoint.floors), checkpoint.detail.get("checkpoint_floor")
    return {}, None
