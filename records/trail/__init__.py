"""The tamper-evident audit trail: chained records, checkpoints, verification and pruning.

One module per concern: ``writing`` (append), ``checkpoints`` (write_checkpoint),
``verification`` (verify), ``pruning`` (prune), ``keys`` (the trail keys) and ``base``
(what they share). Callers use this package: ``from records import trail; trail.append(...)``.

Design (the README's "Audit trail" section says the same for users):

- **One chain per writer.** Each thread that writes audit records (a worker's pool
  thread) appends to its own chain, named ``host:pid:random``; it keeps its chain's head
  in memory, so an append is one INSERT, with no read and no lock shared with other
  writers. The unique key (chain, seq) refuses a second record at the same place, so a
  chain cannot fork. After any database error the writer drops its chain and starts a
  new one (the failed INSERT may or may not have been committed); so does a writer idle
  for longer than ``CHAIN_MAX_IDLE``, which lets pruning forget dead chains.
- **Every record and checkpoint is MACed** (HMAC-SHA256 of its hash) under the current
  *trail key*, derived from the first key of WEBHOOK_ENCRYPTION_KEY (records.trail.keys):
  the database never holds it, so write access to the database alone can add or change
  neither a record nor a checkpoint that verifies. Each MAC names its key by ``key_id``.
- **Checkpoints join the chains.** A checkpoint (``audit_checkpoints``) records the head
  (id, seq, hash) of every chain written in its window (the records newer, by id, than
  those the checkpoint before the previous one saw), and the hash of the previous
  checkpoint: the checkpoints are a chain of their own, and a record they cover can no
  longer be removed from the end of its chain unnoticed. A checkpoint seals only heads
  whose MAC authenticates, and follows only a checkpoint that authenticates. Workers
  write one every ``AUDIT_CHECKPOINT_INTERVAL`` seconds, ``webhooks audit checkpoint``
  on demand; the migration that introduced the chains wrote the first (``genesis``),
  over the rows that existed then, and the one that introduced the MACs (0005) MACed
  every record and checkpoint that existed then.
- **Pruning carries the chains forward.** ``prune`` deletes, chain by chain, the records
  older than the cutoff (a prefix of each chain) and the checkpoints older than it, and
  writes a ``prune`` checkpoint whose ``floors`` give, for each chain, the id, seq and
  hash of the last deleted record: the first remaining record links to it.

What ``verify`` detects: a record whose content or chain fields changed (its hashes no
longer match), a record or checkpoint added or changed by someone without the trail key
(its MAC is missing or wrong: "forged"), a record missing from a chain (a gap in seq, a
head sealed by a checkpoint that is gone), a record that does not follow its predecessor,
a record put back below a prune floor, and a record or checkpoint dated in the future
(more than ``CLOCK_TOLERANCE`` after now, or after the checkpoint that sealed it). No
rule compares a record's date with a checkpoint's otherwise: an attempt spooled during an
outage and written hours later, or a worker whose clock is an hour off, verifies. Under a
trail key no longer configured (after a key rotation), a record verifies when a checkpoint
that vouches seals it, and a checkpoint when a later one that authenticates follows it.
What it cannot detect: a holder of the key (a worker, the operator) who rewrites a whole
chain and every checkpoint after it consistently; publish checkpoint hashes outside the
database (``webhooks audit checkpoint`` prints one) to close that too.
"""

from __future__ import annotations

from records.trail import keys
from records.trail.base import (
    CHAIN_MAX_IDLE,
    CHECKPOINT,
    CHECKPOINT_TRIES,
    CLOCK_TOLERANCE,
    GENESIS,
    GRACE,
    PRUNE,
)
from records.trail.checkpoints import write_checkpoint
from records.trail.pruning import Pruned, prune
from records.trail.verification import Problem, Report, verify
from records.trail.writing import _Head, _heads, append, new_chain_id
from webhooks.clock import utcnow

__all__ = [
    "CHAIN_MAX_IDLE",
    "CHECKPOINT",
    "CHECKPOINT_TRIES",
    "CLOCK_TOLERANCE",
    "GENESIS",
    "GRACE",
    "PRUNE",
    "Problem",
    "Pruned",
    "Report",
    "_Head",
    "_heads",
    "append",
    "keys",
    "new_chain_id",
    "prune",
    "utcnow",
    "verify",
    "write_checkpoint",
]
