"""The tamper-evident audit trail: chained records, checkpoints, verification and pruning.

One module per concern: ``writing`` (append), ``checkpoints`` (write_checkpoint),
``verification`` (verify), ``pruning`` (prune), and ``base`` (what they share). Callers
use this package: ``from records import trail; trail.append(...)``.

Design (the README's "Audit trail" section says the same for users):

- **One chain per writer.** Each thread that writes audit records (a worker's pool
  thread) appends to its own chain, named ``host:pid:random``; it keeps its chain's head
  in memory, so an append is one INSERT, with no read and no lock shared with other
  writers. The unique key (chain, seq) refuses a second record at the same place, so a
  chain cannot fork. After any database error the writer drops its chain and starts a
  new one (the failed INSERT may or may not have been committed); so does a writer idle
  for longer than ``CHAIN_MAX_IDLE``, which lets pruning forget dead chains.
- **Checkpoints join the chains.** A checkpoint (``audit_checkpoints``) records the head
  (id, seq, hash) of every chain written in its window (since the previous checkpoint,
  less ``GRACE``), and the hash of the previous checkpoint: the checkpoints are a chain
  of their own, and a record they cover can no longer be removed from the end of its
  chain unnoticed. Workers write one every ``AUDIT_CHECKPOINT_INTERVAL`` seconds,
  ``webhooks audit checkpoint`` on demand; the migration that introduced the chains
  wrote the first (``genesis``), over the rows that existed then.
- **Pruning carries the chains forward.** ``prune`` deletes, chain by chain, the records
  older than the cutoff (a prefix of each chain) and the checkpoints older than it, and
  writes a ``prune`` checkpoint whose ``floors`` give, for each chain, the id, seq and
  hash of the last deleted record: the first remaining record links to it.

What ``verify`` detects: a record whose content or chain fields changed (its hashes no
longer match), a record missing from a chain (a gap in seq, a head sealed by a checkpoint
that is gone), a record that does not follow its predecessor, and a record inserted after
a checkpoint with an earlier date (not sealed although older than the latest checkpoint,
less ``GRACE``). What it cannot detect alone: someone able to write to the database who
rewrites a whole chain and every checkpoint after it consistently; publish checkpoint
hashes outside the database (``webhooks audit checkpoint`` prints one) to close that too.
"""

from __future__ import annotations

from records.trail.base import (
    CHAIN_MAX_IDLE,
    CHECKPOINT,
    CHECKPOINT_TRIES,
    GENESIS,
    GRACE,
    PRUNE,
    utcnow,
)
from records.trail.checkpoints import write_checkpoint
from records.trail.pruning import Pruned, prune
from records.trail.verification import Problem, Report, verify
from records.trail.writing import _Head, _heads, append, new_chain_id

__all__ = [
    "CHAIN_MAX_IDLE",
    "CHECKPOINT",
    "CHECKPOINT_TRIES",
    "GENESIS",
    "GRACE",
    "PRUNE",
    "Problem",
    "Pruned",
    "Report",
    "_Head",
    "_heads",
    "append",
    "new_chain_id",
    "prune",
    "utcnow",
    "verify",
    "write_checkpoint",
]
