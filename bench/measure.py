"""Pure helpers of the benchmark: CPU and memory of a process tree from /proc, the JSON summary
(and whether the run is accounted), the targets, the table. No service is started here."""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/<pid>/stat the benchmark reads (times in clock ticks)."""

    pid: int
    ppid: int
    utime: int
    stime: int
    cutime: int  # reaped children's user time
    cstime: int  # reaped children's system time

    @property
    def ticks(self) -> int:
        """CPU of the process, its threads and its reaped children."""
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(text: str) -> Stat:
    """Parse a /proc/<pid>/stat line; the command name (2nd field) may hold spaces and parentheses."""
    head, _, rest = text.rpartition(")")
    pid = int(head.split("(", 1)[0])
    fields = rest.split()  # fields[0] is field 3 of proc(5) (state)
    return Stat(
        pid=pid,
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
    )


def tree(root: int, stats: Iterable[Stat]) -> list[Stat]:
    """``root`` and every descendant of it among ``stats``."""
    by_parent: dict[int, list[Stat]] = {}
    found: Stat | None = None
    for stat in stats:
        by_parent.setdefault(stat.ppid, []).append(stat)
        if stat.pid == root:
            found = stat
    if found is None:
        return []
    members, pending = [found], [root]
    while pending:
        for child in by_parent.get(pending.pop(), []):
            members.append(child)
            pending.append(child.pid)
    return members


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # the process is gone
        return None


def all_stats(proc: Path = PROC) -> list[Stat]:
    stats = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            text = _read(entry / "stat")
            if text:
                stats.append(parse_stat(text))
    return stats


def tree_cpu_seconds(root: int, proc: Path = PROC) -> float:
    """User + system CPU of ``root``, its threads, its children (alive or reaped), in seconds."""
    return sum(stat.ticks for stat in tree(root, all_stats(proc))) / CLOCK_TICKS


def parse_rss_kib(status: str) -> int:
    """VmRSS of a /proc/<pid>/status text, in KiB (0 when absent: a zombie)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree_rss_mib(root: int, proc: Path = PROC) -> float:
    """Resident memory of ``root`` and its descendants, in MiB."""
    total = 0
    for stat in tree(root, all_stats(proc)):
        text = _read(proc / str(stat.pid) / "status")
        total += parse_rss_kib(text) if text else 0
    return total / 1024


# --- moto's request recorder ------------------------------------------------------------


def messages_by_action(recording: str) -> Counter[str]:
    """SQS messages concerned by the recorded requests, by action: a batch request counts its
    entries (``DeleteMessageBatch`` of 7 messages: 7), any other request 1. JSON protocol
    (``X-Amz-Target: AmazonSQS.<Action>``); other services' requests are ignored."""
    counts: Counter[str] = Counter()
    for line in recording.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        target = str(entry.get("headers", {}).get("X-Amz-Target", ""))
        if not target.startswith("AmazonSQS."):
            continue
        action = target.rsplit(".", 1)[-1]
        if action.endswith("Batch"):
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode(errors="replace")
            try:
                counts[action] += len(json.loads(body).get("Entries", []))
            except (ValueError, AttributeError):
                counts[action] += 1
        else:
            counts[action] += 1
    return counts


# --- the summary ------------------------------------------------------------------------

KEYS = (
    "raw_post_cpu_ms",
    "noop_task_cpu_ms",
    "delivery_cpu_ms",
    "delivery_cpu_ms_features_off",
    "subscriber_cache_cpu_ms",
    "noop_tasks_per_s",
    "deliveries_per_s",
    "healthy_rate_ratio_with_hanging",
    "failing_subscriber_posts_ratio",
    "recovered_all",
    "sqs_requests_per_delivery",
    "sqs_requests_per_hop",
    "dispatch_requests_per_lead_10_subscribers",
    "worker_rss_mb",
    "accounted",
)
#: the keys that say yes or no (the others are numbers, rounded to 3 decimals)
FLAGS = ("recovered_all", "accounted")


@dataclass(frozen=True)
class Accounting:
    """Every delivery the run dispatched, and what became of it (from the audit)."""

    dispatched: int
    delivered: int  # a success recorded
    failed: int  # an error or abandoned attempt recorded, no success
    held: int = 0  # no attempt yet, a ``held`` record (open circuit, in-flight limit): still in SQS, its hold recorded

    @property
    def accounted(self) -> bool:
        """True only when every dispatched delivery is delivered, failed or held."""
        return self.dispatched > 0 and self.delivered + self.failed + self.held == self.dispatched


def accounting(dispatched: Iterable[str], attempts: Iterable[tuple[str, str]]) -> Accounting:
    """From the ids dispatched and the audit's (delivery id, status) pairs.

    Attempts of deliveries the run did not dispatch are ignored; a delivery with several
    records counts once: delivered if any succeeded, else failed if an attempt failed, else held
    if it was held (and never attempted).
    """
    wanted = set(dispatched)
    statuses: dict[str, set[str]] = {}
    for delivery_id, status in attempts:
        if delivery_id in wanted:
            statuses.setdefault(delivery_id, set()).add(status)
    delivered = sum(1 for found in statuses.values() if "success" in found)
    failed = sum(1 for found in statuses.values() if "success" not in found and found & {"error", "abandoned"})
    held = sum(1 for found in statuses.values() if found == {"held"})
    return Accounting(len(wanted), delivered, failed, held)


def all_delivered(wanted: Iterable[str], attempts: Iterable[tuple[str, str]]) -> bool:
    """True when every one of ``wanted`` (at least one) has a success among the (delivery id,
    status) pairs."""
    wanted = set(wanted)
    succeeded = {delivery_id for delivery_id, status in attempts if status == "success"}
    return bool(wanted) and wanted <= succeeded


def summary(measured: Mapping[str, float | bool], book: Accounting) -> dict[str, Any]:
    """The JSON line: every key of KEYS, numbers rounded, ``accounted`` from the audit."""
    missing = set(KEYS) - {"accounted"} - set(measured)
    if missing:
        raise ValueError(f"not measured: {sorted(missing)}")
    line: dict[str, Any] = {
        key: bool(measured[key]) if key in FLAGS else round(float(measured[key]), 3)
        for key in KEYS
        if key != "accounted"
    }
    line["accounted"] = book.accounted
    return line


class Steady:
    """Whether a condition has held, without a break, for ``seconds`` (times given by the caller)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.since: float | None = None

    def check(self, holds: bool, now: float) -> bool:
        """Say that the condition holds (or not) at ``now``; True once it has held for ``seconds``."""
        if not holds:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.seconds


def paired(on: Sequence[float], off: Sequence[float]) -> list[float]:
    """The differences ``on - off`` of measures taken in pairs (one pair per round)."""
    if len(on) != len(off):
        raise ValueError(f"{len(on)} measures for {len(off)}: they go in pairs")
    return [a - b for a, b in zip(on, off, strict=True)]


@dataclass(frozen=True)
class Target:
    name: str
    met: bool
    detail: str


def targets(line: Mapping[str, Any]) -> list[Target]:
    """The issue's targets, checked against a summary line."""
    floor = line["noop_task_cpu_ms"] + line["raw_post_cpu_ms"] + 1.0
    rate = 0.9 * line["noop_tasks_per_s"]
    return [
        Target(
            "delivery CPU",
            line["delivery_cpu_ms"] <= floor,
            f"{line['delivery_cpu_ms']:.2f} ms <= noop + raw POST + 1.0 = {floor:.2f} ms",
        ),
        Target(
            "delivery rate",
            line["deliveries_per_s"] >= rate,
            f"{line['deliveries_per_s']:.1f}/s >= 0.9 x noop = {rate:.1f}/s",
        ),
        Target(
            "cost of the subscriber cache and checks, two drains",
            line["delivery_cpu_ms"] <= line["delivery_cpu_ms_features_off"] + 0.1,
            f"{line['delivery_cpu_ms']:.2f} ms <= features off + 0.1 = "
            f"{line['delivery_cpu_ms_features_off'] + 0.1:.2f} ms (within the drains' noise: see the table)",
        ),
        Target(
            "cost of the subscriber cache and checks, priced",
            line["subscriber_cache_cpu_ms"] <= 0.1,
            f"{line['subscriber_cache_cpu_ms']:.3f} ms <= 0.1 (bench.cache: a load's share and the checks)",
        ),
        Target(
            "hanging subscribers",
            line["healthy_rate_ratio_with_hanging"] >= 0.95,
            f"healthy rate ratio {line['healthy_rate_ratio_with_hanging']:.2f} >= 0.95 (circuits open)",
        ),
        Target(
            "failing subscribers",
            line["failing_subscriber_posts_ratio"] <= 0.1,
            f"POSTs to them, breaker on / off: {line['failing_subscriber_posts_ratio']:.3f} <= 0.1",
        ),
        Target("recovered", bool(line["recovered_all"]), "every delivery to a subscriber back up is delivered"),
        Target(
            "SQS per delivery",
            line["sqs_requests_per_delivery"] <= 2.2,
            f"{line['sqs_requests_per_delivery']:.2f} <= 2.2",
        ),
        Target(
            "dispatch, 10 subscribers",
            line["dispatch_requests_per_lead_10_subscribers"] <= 10,
            f"{line['dispatch_requests_per_lead_10_subscribers']:g} <= 10",
        ),
        Target("accounted", bool(line["accounted"]), "delivered + failed + held == dispatched"),
    ]


def table(rows: Iterable[tuple[str, str, str]], headers: tuple[str, str, str] = ("measure", "value", "how")) -> str:
    """A Markdown table (readable as text too)."""
    rows = list(rows)
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(3)]
    lines = [
        "| " + " | ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in [headers, *rows]
    ]
    lines.insert(1, "| " + " | ".join("-" * width for width in widths) + " |")
    return "\n".join(lines)
