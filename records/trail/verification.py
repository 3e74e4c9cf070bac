"""Verification: every hash and link of the trail recomputed (see records.trail for what it detects)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, func, select
from sqlalchemy.orm import Session

from records import canonical, database
from records.models import AuditCheckpoint
from records.trail.base import GRACE, attempts, prune_floors


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


def verify(url: str, since: datetime | None = None) -> Report:
    """Recompute every hash and link of the trail (with ``since``: of the records dated from then on)."""
    report = Report(since=since)
    with database.session(url) as session:  # one transaction: one consistent snapshot (InnoDB)
        checkpoints = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)))
        floors, checkpoint_floor = prune_floors(checkpoints)
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
