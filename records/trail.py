"""The tamper-evident audit trail: chained records, checkpoints, verification and pruning.

Design (docs/audit.md's "Audit trail" section says the same for users):

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

import itertools
import os
import secrets
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, and_, case, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from records import canonical, database
from records.models import AuditCheckpoint, DeliveryAttempt
from webhooks.clock import utcnow
from webhooks.errors import AuditError, TrailBroken

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
_attempts = cast(Table, DeliveryAttempt.__table__)
_insert_attempt = _attempts.insert()


# --- Writing: one chain per thread ------------------------------------------------------


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
    thread's chain: one INSERT in its own transaction. Database errors propagate.

    Returns the record's columns as written, its ``id`` included."""
    heads = _heads()
    moment = now or utcnow()
    head = heads.get(url)
    if head is None or moment - head.written_at > CHAIN_MAX_IDLE:
        head = heads[url] = _Head(new_chain_id())
    values = dict(fields)
    values["duration_ms"] = round(float(values["duration_ms"]), 3)  # what is stored is what is hashed
    content_digest = canonical.content_hash(values)
    seq = head.seq + 1
    values.update(
        chain=head.chain,
        seq=seq,
        prev_id=head.id,
        prev_hash=head.hash,
        content_hash=content_digest,
        record_hash=canonical.record_hash(head.chain, seq, head.id, head.hash, content_digest),
    )
    try:
        # Not the ORM's unit of work, nor SQLAlchemy's execution machinery with PyMySQL: the same
        # one INSERT, for a fraction of the CPU; in autocommit mode: one round trip, no COMMIT
        # nor ROLLBACK after it (records.database.insert)
        key = database.insert(url, _insert_attempt, values)
        if not key:
            raise AuditError("the database returned no id for the audit record")
    except BaseException:
        # The INSERT may or may not have been committed: continuing this chain could fork it
        # or leave a gap. The next record starts a new chain.
        heads.pop(url, None)
        raise
    head.seq, head.id, head.hash, head.written_at = seq, key, values["record_hash"], moment
    values["id"] = head.id
    return values


# --- Checkpoints ------------------------------------------------------------------------


def _active_heads(session: Session, since: datetime) -> dict[str, dict[str, Any]]:
    """The head of every chain with a record dated ``since`` or later."""
    active = select(_attempts.c.chain).where(_attempts.c.attempted_at >= since).distinct()
    tops = (
        select(_attempts.c.chain, func.max(_attempts.c.seq).label("seq"))
        .where(_attempts.c.chain.in_(active))
        .group_by(_attempts.c.chain)
        .subquery()
    )
    rows = session.execute(
        select(_attempts.c.chain, _attempts.c.seq, _attempts.c.id, _attempts.c.record_hash).join(
            tops, and_(_attempts.c.chain == tops.c.chain, _attempts.c.seq == tops.c.seq)
        )
    )
    return {row.chain: {"id": row.id, "seq": row.seq, "hash": row.record_hash} for row in rows}


def _latest(session: Session) -> AuditCheckpoint:
    latest = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc()).limit(1)).first()
    if latest is None:
        raise AuditError("the audit trail has no checkpoint, not even its genesis: run `webhooks db upgrade`")
    return latest


def _seal(
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
                heads = _active_heads(session, window)
                if only_if_changed and all(latest.heads.get(chain) == head for chain, head in heads.items()):
                    return None
                return _seal(session, latest, CHECKPOINT, moment, heads, {}, {"window_from": canonical.moment(window)})
        except IntegrityError:
            if attempt >= CHECKPOINT_TRIES:
                raise
    raise AssertionError("unreachable")


# --- Verification -----------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One break in the trail; ``order`` sorts them (record id, then checkpoints)."""

    order: tuple[int, int]
    text: str


@dataclass
class Report:
    records: int = 0
    chains: int = 0
    checkpoints: int = 0
    unsealed: int = 0
    latest: AuditCheckpoint | None = None
    since: datetime | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def sorted_problems(self) -> list[Problem]:
        return sorted(self.problems, key=lambda problem: problem.order)

    def headline(self) -> str:
        problems = self.sorted_problems()
        more = f" ({len(problems)} problems in all, listed above)" if len(problems) > 1 else ""
        return f"audit trail broken: {problems[0].text}{more}"

    def summary(self) -> str:
        scope = f"since {canonical.moment(self.since)}: " if self.since else ""
        text = f"audit trail intact: {scope}{self.records} records in {self.chains} chains"
        text += f", {self.checkpoints} checkpoints"
        if self.latest is not None:
            text += (
                f"; latest checkpoint #{self.latest.seq} at {canonical.moment(self.latest.created_at)}, "
                f"hash {self.latest.record_hash}"
            )
        if self.unsealed:
            text += f"; {self.unsealed} records newer than the checkpoints (chained, not sealed yet)"
        return text


def _record_name(row: Any) -> str:
    return f"record {row.id} (chain {row.chain}, seq {row.seq})"


def _prune_floors(checkpoints: Sequence[AuditCheckpoint]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The floors of the latest prune checkpoint: where each pruned chain, and the checkpoints, resume."""
    for checkpoint in reversed(checkpoints):
        if checkpoint.kind == PRUNE:
            return dict(checkpoint.floors), checkpoint.detail.get("checkpoint_floor")
    return {}, None


def _check_checkpoints(checkpoints: Sequence[AuditCheckpoint], floor: Mapping[str, Any] | None) -> list[Problem]:
    problems: list[Problem] = []

    def problem(checkpoint: AuditCheckpoint, text: str) -> None:
        problems.append(Problem((1 << 62, checkpoint.seq), text))

    expected_seq, expected_prev = (floor["seq"] + 1, floor["hash"]) if floor else (1, canonical.ZERO_HASH)
    for checkpoint in checkpoints:
        name = f"checkpoint #{checkpoint.seq} (id {checkpoint.id})"
        recomputed = canonical.checkpoint_hash(
            checkpoint.seq,
            checkpoint.kind,
            checkpoint.created_at,
            checkpoint.prev_hash,
            checkpoint.heads,
            checkpoint.floors,
            checkpoint.detail,
        )
        if recomputed != checkpoint.record_hash:
            problem(checkpoint, f"{name} altered: its content does not match its hash")
        if checkpoint.seq > expected_seq:
            gone = f"#{expected_seq}" + (f" to #{checkpoint.seq - 1}" if checkpoint.seq - 1 > expected_seq else "")
            problem(checkpoint, f"checkpoint {gone} missing: {name} comes after #{expected_seq - 1}")
        elif checkpoint.prev_hash != expected_prev:
            problem(checkpoint, f"{name} does not follow checkpoint #{checkpoint.seq - 1}: altered or replaced")
        expected_seq, expected_prev = checkpoint.seq + 1, checkpoint.record_hash
    if not checkpoints:
        problems.append(Problem((1 << 62, 0), "no checkpoint at all: even the genesis checkpoint is gone"))
    return problems


def _records(session: Session, since: datetime | None) -> Iterator[Row[Any]]:
    """Every record ordered by chain and seq; with ``since``, each chain from its first record dated since."""
    query = select(_attempts)
    if since is not None:
        starts = (
            select(_attempts.c.chain, func.min(_attempts.c.seq).label("start"))
            .where(_attempts.c.attempted_at >= since)
            .group_by(_attempts.c.chain)
            .subquery()
        )
        query = query.join(starts, and_(_attempts.c.chain == starts.c.chain, _attempts.c.seq >= starts.c.start))
    query = query.order_by(_attempts.c.chain, _attempts.c.seq)
    yield from session.execute(query, execution_options={"yield_per": 200})


def verify(url: str, since: datetime | None = None) -> Report:
    """Recompute every hash and link of the trail (with ``since``: of the records dated from then on)."""
    report = Report(since=since)
    with database.session(url) as session:  # one transaction: one consistent snapshot (InnoDB)
        checkpoints = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)))
        floors, checkpoint_floor = _prune_floors(checkpoints)
        report.checkpoints = len(checkpoints)
        report.latest = checkpoints[-1] if checkpoints else None
        report.problems += _check_checkpoints(checkpoints, checkpoint_floor)

        sealed: dict[str, dict[int, tuple[AuditCheckpoint, dict[str, Any]]]] = {}
        for checkpoint in checkpoints:
            for chain, head in checkpoint.heads.items():
                sealed.setdefault(chain, {}).setdefault(head["seq"], (checkpoint, head))
        inserted_before = report.latest.created_at - GRACE if report.latest else None

        seen: set[str] = set()
        for chain, rows in itertools.groupby(_records(session, since), key=lambda row: str(row.chain)):
            seen.add(chain)
            report.chains += 1
            _check_chain(chain, rows, floors.get(chain), sealed.get(chain, {}), inserted_before, since, report)

    if since is None:
        for chain, heads in sealed.items():
            if chain in seen:
                continue
            floor_seq = floors[chain]["seq"] if chain in floors else 0
            for seq, (checkpoint, head) in sorted(heads.items()):
                if seq > floor_seq:
                    report.problems.append(
                        Problem(
                            (head["id"], 0),
                            f"record {head['id']} (chain {chain}, seq {seq}) missing, with its whole chain: "
                            f"checkpoint #{checkpoint.seq} sealed it",
                        )
                    )
                    break
    return report


def _check_chain(
    chain: str,
    rows: Iterable[Row[Any]],
    floor: Mapping[str, Any] | None,
    sealed: Mapping[int, tuple[AuditCheckpoint, dict[str, Any]]],
    inserted_before: datetime | None,
    since: datetime | None,
    report: Report,
) -> None:
    def problem(row_id: int, text: str) -> None:
        report.problems.append(Problem((row_id, 1), text))

    floor_seq = floor["seq"] if floor else 0
    expected: tuple[int, int | None, str] | None = None  # seq, prev_id, prev_hash of the next record
    sealed_up_to = max([floor_seq, *sealed])
    last: Row[Any] | None = None
    for row in rows:
        report.records += 1
        name = _record_name(row)
        if row.seq <= floor_seq:
            problem(row.id, f"{name} inserted: the chain was pruned up to seq {floor_seq}")
            continue
        if expected is None:
            if since is not None and row.seq > floor_seq + 1:
                expected = (row.seq, row.prev_id, row.prev_hash)  # the window starts here: its link is taken as is
            elif floor:
                expected = (floor_seq + 1, floor["id"], floor["hash"])
            else:
                expected = (1, None, canonical.ZERO_HASH)
        intact = True
        if canonical.content_hash(row._mapping) != row.content_hash:
            problem(row.id, f"{name} altered: its content does not match its content_hash")
            intact = False
        elif canonical.record_hash(row.chain, row.seq, row.prev_id, row.prev_hash, row.content_hash) != row.record_hash:
            problem(row.id, f"{name} altered: its chain fields do not match its record_hash")
            intact = False
        expected_seq, expected_id, expected_hash = expected
        if row.seq > expected_seq:
            intact = False
            if row.seq == expected_seq + 1:
                problem(
                    row.prev_id or row.id,
                    f"record {row.prev_id} (chain {chain}, seq {expected_seq}) missing: {name} comes after it",
                )
            else:
                problem(
                    row.prev_id or row.id,
                    f"records seq {expected_seq} to {row.seq - 1} of chain {chain} missing "
                    f"(the last of them was record {row.prev_id}): {name} comes after them",
                )
        elif row.prev_hash != expected_hash or row.prev_id != expected_id:
            intact = False
            before = f"record {expected_id} (chain {chain}, seq {row.seq - 1})" if expected_id else "the chain's start"
            problem(
                expected_id or row.id,
                f"{before} altered or {name} replaced: {name} does not follow it (prev_hash differs)",
            )
        if intact and row.seq in sealed:
            checkpoint, head = sealed[row.seq]
            if head["hash"] != row.record_hash or head["id"] != row.id:
                problem(row.id, f"{name} replaced: checkpoint #{checkpoint.seq} sealed record {head['id']} there")
        if row.seq > sealed_up_to:
            report.unsealed += 1
            if inserted_before is not None and row.attempted_at < inserted_before:
                assert report.latest is not None
                problem(
                    row.id,
                    f"{name} inserted: dated {canonical.moment(row.attempted_at)}, before checkpoint "
                    f"#{report.latest.seq} ({canonical.moment(report.latest.created_at)}), which does not seal it",
                )
        expected = (row.seq + 1, row.id, row.record_hash)
        last = row

    if last is None:
        return
    for seq, (checkpoint, head) in sorted(sealed.items()):
        if seq > last.seq:
            problem(
                head["id"],
                f"record {head['id']} (chain {chain}, seq {seq}) missing: checkpoint #{checkpoint.seq} sealed it, "
                f"the chain now ends at seq {last.seq}",
            )
            break
        if seq == floor_seq and floor is not None and head["hash"] != floor["hash"]:
            problem(head["id"], f"the prune floor of chain {chain} differs from checkpoint #{checkpoint.seq}")


# --- Pruning ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pruned:
    before: datetime
    records: int
    checkpoints: int
    checkpoint: AuditCheckpoint


def prune(url: str, before: datetime, now: datetime | None = None) -> Pruned:
    """Delete the records dated before ``before`` (each chain's oldest, up to its first newer
    record) and the checkpoints older than it; a prune checkpoint carries the trail forward.

    Refused when the trail does not verify: pruning would delete the evidence of it.
    """
    report = verify(url)
    if not report.ok:
        raise TrailBroken(
            f"prune refused: {report.headline()}; "
            "`webhooks audit verify` lists every problem, pruning would delete their evidence"
        )
    for attempt in itertools.count(1):
        try:
            return _prune(url, before, now or utcnow())
        except IntegrityError:  # a worker wrote a checkpoint at the same time: read again
            if attempt >= CHECKPOINT_TRIES:
                raise
    raise AssertionError("unreachable")


def _prune(url: str, before: datetime, moment: datetime) -> Pruned:
    with database.session(url) as session:
        checkpoints = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)))
        if not checkpoints:
            raise AuditError("the audit trail has no checkpoint, not even its genesis: run `webhooks db upgrade`")
        latest = checkpoints[-1]
        floors, checkpoint_floor = _prune_floors(checkpoints)
        carried = set(floors)

        spans = session.execute(
            select(
                _attempts.c.chain,
                func.max(_attempts.c.seq).label("head"),
                func.min(case((_attempts.c.attempted_at >= before, _attempts.c.seq))).label("keep_from"),
            ).group_by(_attempts.c.chain)
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
                select(_attempts.c.id, _attempts.c.record_hash).where(
                    _attempts.c.chain == chain, _attempts.c.seq == last_deleted
                )
            ).one()
            floors[chain] = {"id": found.id, "seq": last_deleted, "hash": found.record_hash}

        old = list(itertools.takewhile(lambda checkpoint: checkpoint.created_at < before, checkpoints))
        if old:
            checkpoint_floor = {"seq": old[-1].seq, "hash": old[-1].record_hash}
        kept = checkpoints[len(old) :]
        heads = _active_heads(session, latest.created_at - GRACE)
        # A floor is forgotten once its chain is wholly gone, was untouched by this prune, and
        # no kept checkpoint names it: its writer has been idle for longer than CHAIN_MAX_IDLE.
        named = set(heads).union(*(checkpoint.heads for checkpoint in kept))
        for chain in carried - remaining - set(cuts) - named:
            del floors[chain]

        records = 0
        for chain, (first, last_deleted) in cuts.items():
            result = session.execute(
                delete(_attempts).where(
                    _attempts.c.chain == chain, _attempts.c.seq >= first, _attempts.c.seq <= last_deleted
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
        checkpoint = _seal(session, latest, PRUNE, moment, heads, floors, detail)
        if old:
            session.execute(delete(AuditCheckpoint).where(AuditCheckpoint.seq <= old[-1].seq))
        return Pruned(before, records, len(old), checkpoint)
