"""Verification: every hash, link and MAC of the trail recomputed (see records.trail for what it detects)."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, func, select
from sqlalchemy.orm import Session

from records import canonical, database
from records.models import AuditCheckpoint
from records.trail import keys
from records.trail.base import CLOCK_TOLERANCE, attempts, prune_floors
from records.trail.checkpoints import checkpoint_digest
from webhooks.clock import utcnow

TOLERANCE = f"{CLOCK_TOLERANCE.total_seconds() / 3600:g} h"


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
    key_ids: list[str] = field(default_factory=list)  # the configured trail keys, the current one first
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
        if self.key_ids:
            text += f"; MACs checked under trail key {', '.join(self.key_ids)}"
        return text


def _record_name(row: Any) -> str:
    return f"record {row.id} (chain {row.chain}, seq {row.seq})"


def _check_checkpoints(
    checkpoints: Sequence[AuditCheckpoint],
    floor: Mapping[str, Any] | None,
    trail_keys: Mapping[str, bytes],
    latest_allowed: datetime,
) -> tuple[list[Problem], set[int]]:
    """The problems of the checkpoints, and the seqs of those that vouch for what they seal: those whose
    MAC authenticates, and those (under a trail key no longer configured) a vouching one chains onto."""
    problems: list[Problem] = []

    def problem(checkpoint: AuditCheckpoint, text: str) -> None:
        problems.append(Problem((1 << 62, checkpoint.seq), text))

    intact: dict[int, bool] = {}
    expected_seq, expected_prev = (floor["seq"] + 1, floor["hash"]) if floor else (1, canonical.ZERO_HASH)
    for checkpoint in checkpoints:
        name = f"checkpoint #{checkpoint.seq} (id {checkpoint.id})"
        intact[checkpoint.seq] = checkpoint_digest(checkpoint) == checkpoint.record_hash
        if not intact[checkpoint.seq]:
            problem(checkpoint, f"{name} altered: its content does not match its hash")
        if checkpoint.seq > expected_seq:
            gone = f"#{expected_seq}" + (f" to #{checkpoint.seq - 1}" if checkpoint.seq - 1 > expected_seq else "")
            problem(checkpoint, f"checkpoint {gone} missing: {name} comes after #{expected_seq - 1}")
        elif checkpoint.prev_hash != expected_prev:
            problem(checkpoint, f"{name} does not follow checkpoint #{checkpoint.seq - 1}: altered or replaced")
        if checkpoint.created_at > latest_allowed:
            problem(
                checkpoint,
                f"{name} dated in the future: {canonical.moment(checkpoint.created_at)}, more than {TOLERANCE} "
                "after now",
            )
        expected_seq, expected_prev = checkpoint.seq + 1, checkpoint.record_hash
    if not checkpoints:
        problems.append(Problem((1 << 62, 0), "no checkpoint at all: even the genesis checkpoint is gone"))

    vouching: set[int] = set()
    after: AuditCheckpoint | None = None  # the next checkpoint, if it vouches and follows this one
    for checkpoint in reversed(checkpoints):
        name = f"checkpoint #{checkpoint.seq} (id {checkpoint.id})"
        authentic = keys.checkpoint_authentic(trail_keys, checkpoint.key_id, checkpoint.mac, checkpoint.record_hash)
        chained = (
            after is not None
            and after.seq == checkpoint.seq + 1
            and after.prev_hash == checkpoint.record_hash
            and intact[checkpoint.seq]
        )
        if checkpoint.mac is None:
            problem(checkpoint, f"{name} forged: it has no MAC (written without the trail key)")
        elif checkpoint.key_id in trail_keys and not authentic:
            problem(
                checkpoint,
                f"{name} forged: its MAC does not match under trail key {checkpoint.key_id} "
                "(written or changed without the key)",
            )
        elif not authentic and not chained:
            problem(
                checkpoint,
                f"{name} unverifiable: MACed under trail key {checkpoint.key_id}, which is not configured "
                "(WEBHOOK_ENCRYPTION_KEY), and no later checkpoint vouches for it",
            )
        if (authentic and intact[checkpoint.seq]) or (chained and checkpoint.mac is not None):
            vouching.add(checkpoint.seq)
            after = checkpoint
        else:
            after = None
    return problems, vouching


class _Seals:
    """The heads of one chain sealed by checkpoints: which checkpoint first sealed a seq, and how far the
    checkpoints that vouch reach."""

    def __init__(self) -> None:
        self.at: dict[int, tuple[AuditCheckpoint, dict[str, Any]]] = {}  # seq -> the first checkpoint sealing it
        self.vouched_up_to = 0
        self._seqs: list[int] = []
        self._first: list[AuditCheckpoint] = []

    def add(self, checkpoint: AuditCheckpoint, head: dict[str, Any], vouches: bool) -> None:
        self.at.setdefault(head["seq"], (checkpoint, head))
        if vouches:
            self.vouched_up_to = max(self.vouched_up_to, head["seq"])

    def done(self) -> None:
        """Index the first checkpoint sealing each seq: the earliest of those whose head is at it or beyond."""
        self._seqs = sorted(self.at)
        earliest: AuditCheckpoint | None = None
        firsts: list[AuditCheckpoint] = []
        for seq in reversed(self._seqs):
            checkpoint = self.at[seq][0]
            if earliest is None or checkpoint.seq < earliest.seq:
                earliest = checkpoint
            firsts.append(earliest)
        self._first = firsts[::-1]

    def first_sealer(self, seq: int) -> AuditCheckpoint | None:
        index = bisect.bisect_left(self._seqs, seq)
        return self._first[index] if index < len(self._seqs) else None


def _records(session: Session, since: datetime | None) -> Iterator[Row[Any]]:
    """Every record ordered by chain and seq; with ``since``, each chain from its first record dated since."""
    query = select(attempts)
    if since is not None:
        starts = (
            select(attempts.c.chain, func.min(attempts.c.seq).label("start"))
            .where(attempts.c.attempted_at >= since)
            .group_by(attempts.c.chain)
            .subquery()
        )
        query = query.join(starts, and_(attempts.c.chain == starts.c.chain, attempts.c.seq >= starts.c.start))
    query = query.order_by(attempts.c.chain, attempts.c.seq)
    yield from session.execute(query, execution_options={"yield_per": 200})


def verify(
    url: str,
    since: datetime | None = None,
    *,
    now: datetime | None = None,
    encryption_keys: Sequence[bytes] | None = None,
) -> Report:
    """Recompute every hash, link and MAC of the trail (with ``since``: of the records dated from then on).

    The MACs are checked under the trail keys of ``encryption_keys`` (default: WEBHOOK_ENCRYPTION_KEY's);
    AuditError when there is none."""
    trail_keys = keys.by_id(encryption_keys)
    latest_allowed = (now or utcnow()) + CLOCK_TOLERANCE
    report = Report(since=since, key_ids=list(trail_keys))
    with database.session(url) as session:  # one transaction: one consistent snapshot (InnoDB)
        checkpoints = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)))
        floors, checkpoint_floor = prune_floors(checkpoints)
        report.checkpoints = len(checkpoints)
        report.latest = checkpoints[-1] if checkpoints else None
        problems, vouching = _check_checkpoints(checkpoints, checkpoint_floor, trail_keys, latest_allowed)
        report.problems += problems

        seals: dict[str, _Seals] = {}
        for checkpoint in checkpoints:
            for chain, head in checkpoint.heads.items():
                seals.setdefault(chain, _Seals()).add(checkpoint, head, checkpoint.seq in vouching)
        for chain_seals in seals.values():
            chain_seals.done()

        seen: set[str] = set()
        for chain, rows in itertools.groupby(_records(session, since), key=lambda row: str(row.chain)):
            seen.add(chain)
            report.chains += 1
            chain_seals = seals.get(chain) or _Seals()
            _check_chain(chain, rows, floors.get(chain), chain_seals, trail_keys, latest_allowed, since, report)

    if since is None:
        for chain, chain_seals in seals.items():
            if chain in seen:
                continue
            floor_seq = floors[chain]["seq"] if chain in floors else 0
            for seq, (checkpoint, head) in sorted(chain_seals.at.items()):
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
    seals: _Seals,
    trail_keys: Mapping[str, bytes],
    latest_allowed: datetime,
    since: datetime | None,
    report: Report,
) -> None:
    def problem(row_id: int, text: str) -> None:
        report.problems.append(Problem((row_id, 1), text))

    sealed = seals.at
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
        _check_mac(row, name, trail_keys, row.seq <= seals.vouched_up_to, problem)
        _check_date(row, name, seals, latest_allowed, problem)
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


def _check_mac(row: Row[Any], name: str, trail_keys: Mapping[str, bytes], vouched: bool, problem: Any) -> None:
    """A record's MAC authenticates under its trail key; under a key no longer configured, a checkpoint
    that vouches must seal it instead."""
    if keys.record_authentic(trail_keys, row.key_id, row.mac, row.record_hash):
        return
    if row.mac is None:
        problem(row.id, f"{name} forged: it has no MAC (written without the trail key)")
    elif row.key_id in trail_keys:
        problem(
            row.id,
            f"{name} forged: its MAC does not match under trail key {row.key_id} (written or changed without the key)",
        )
    elif not vouched:
        problem(
            row.id,
            f"{name} unverifiable: MACed under trail key {row.key_id}, which is not configured "
            "(WEBHOOK_ENCRYPTION_KEY), and no checkpoint seals it",
        )


def _check_date(row: Row[Any], name: str, seals: _Seals, latest_allowed: datetime, problem: Any) -> None:
    """A record dated in the future: after now, or after the checkpoint that first sealed it (clocks may
    differ by CLOCK_TOLERANCE)."""
    dated = canonical.moment(row.attempted_at)
    if row.attempted_at > latest_allowed:
        problem(row.id, f"{name} dated in the future: {dated}, more than {TOLERANCE} after now")
        return
    sealer = seals.first_sealer(row.seq)
    if sealer is not None and row.attempted_at > sealer.created_at + CLOCK_TOLERANCE:
        problem(
            row.id,
            f"{name} dated in the future: {dated}, more than {TOLERANCE} after checkpoint #{sealer.seq} "
            f"({canonical.moment(sealer.created_at)}), which sealed it",
        )
